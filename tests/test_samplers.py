"""The bounded-history view model-based samplers read (paitune.search.samplers)."""

from __future__ import annotations

import optuna
import pytest

from paitune.config.sweep import SAMPLERS
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


def _interleaved_nsga2(sampler_for, n: int, tmp_path, restart_at: int | None = None):
    """Two objectives, two trials in flight, every seventh trial failing, in journal storage; with
    ``restart_at``, a new sampler (as after a driver restart) takes over the study there."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / f"{id(sampler_for)}-{restart_at}.log")))
    study = optuna.create_study(directions=["minimize", "minimize"], storage=storage, sampler=sampler_for())
    in_flight, asked = [], []
    for i in range(n):
        if restart_at is not None and i == restart_at:
            study = optuna.load_study(study_name=study.study_name, storage=storage, sampler=sampler_for())
            in_flight = [optuna.Trial(study, t._trial_id) for t in in_flight]
        trial = study.ask()
        x, kind = trial.suggest_float("x", -5, 5), trial.suggest_categorical("kind", ["a", "b", "c"])
        asked.append((x, kind))
        in_flight.append(trial)
        if len(in_flight) == 2:  # the older of the two ends first
            done = in_flight.pop(0)
            if done.number % 7 == 6:
                study.tell(done, state=optuna.trial.TrialState.FAIL)
            else:
                dx, dk = done.params["x"], done.params["kind"]
                study.tell(done, [(dx - 1) ** 2 + "abc".index(dk), (dx + 1) ** 2])
    return asked


@pytest.mark.parametrize("restart_at", [None, 130])
def test_the_flat_nsga2_suggests_exactly_what_optunas_does(tmp_path, restart_at):
    from paitune.search.internals import flat_nsga2_sampler

    def stock():
        return optuna.samplers.NSGAIISampler(seed=3, population_size=10)

    def flat():
        return flat_nsga2_sampler(seed=3, population_size=10)

    # 260 trials: 20-odd generations of 10, elites carried over, parents fetched from the cache
    expected = _interleaved_nsga2(stock, 260, tmp_path, restart_at)
    assert _interleaved_nsga2(flat, 260, tmp_path, restart_at) == expected
    assert make_sampler("nsga2", seed=0, n_objectives=2)._get_generation_key() == "NSGAIISampler:generation"


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_past_its_startup_trials(name):
    # Each sampler's own model (and any package it needs, as CMA-ES needs cmaes) is exercised:
    # 15 trials take every model-based sampler past its random startup.
    study = optuna.create_study(sampler=make_sampler(name, seed=0, n_objectives=1))
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2 + t.suggest_float("y", 0, 1), n_trials=15)
    assert len(study.trials) == 15 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
