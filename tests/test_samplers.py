"""The bounded-history view model-based samplers read (paitune.search.samplers)."""

from __future__ import annotations

import optuna
import pytest

from paitune.search.internals import StudyHistoryView
from paitune.search.samplers import HISTORY_LIMITS, BoundedHistory, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    x = trial.suggest_float("x", -5, 5)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return (x - 1.5) ** 2 + {"a": 0.0, "b": 1.0, "c": 2.0}[kind]


def _suggestions(sampler, n):
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials], study


def test_the_view_keeps_unfinished_trials_and_the_last_finished_ones():
    study = optuna.create_study()
    for i in range(6):
        study.enqueue_trial({"x": float(i)})
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=5)
    running = study.ask()  # the sixth, still running
    view = StudyHistoryView(study, limit=2)
    assert [t.number for t in view.get_trials(deepcopy=False)] == [3, 4, 5]
    assert [t.number for t in view._get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))] == [3, 4]
    assert [t.number for t in StudyHistoryView(study, limit=100).trials] == list(range(6))
    assert view.directions == study.directions  # everything else is the study's own
    study.tell(running, 1.0)


def test_a_bound_above_the_history_changes_nothing_and_a_seed_repeats_its_suggestions():
    plain, _ = _suggestions(optuna.samplers.TPESampler(seed=3), 40)
    bounded, _ = _suggestions(BoundedHistory(optuna.samplers.TPESampler(seed=3), limit=1000), 40)
    assert bounded == plain
    tight_1, _ = _suggestions(BoundedHistory(optuna.samplers.TPESampler(seed=3, n_startup_trials=5), limit=10), 40)
    tight_2, study = _suggestions(BoundedHistory(optuna.samplers.TPESampler(seed=3, n_startup_trials=5), limit=10), 40)
    assert tight_1 == tight_2  # deterministic under the bound
    # and still a search: the last draws sit near the optimum x = 1.5, kind a
    assert abs(study.best_params["x"] - 1.5) < 1.0


def test_model_based_samplers_are_bounded_and_the_others_are_not():
    for name in ("tpe", "gp"):
        sampler = make_sampler(name, seed=0, n_objectives=1)
        assert isinstance(sampler, BoundedHistory) and sampler.limit == HISTORY_LIMITS[name]
    for name in ("random", "grid", "cmaes", "nsga2"):
        assert not isinstance(make_sampler(name, seed=0, n_objectives=1), BoundedHistory)
    with pytest.raises(ValueError):
        BoundedHistory(optuna.samplers.RandomSampler(), 0)
