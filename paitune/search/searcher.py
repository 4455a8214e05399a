"""Optuna inside Ray Tune, telling Optuna how each trial really ended.

Ray's stock ``OptunaSearch`` tells Optuna COMPLETE for every trial that ends without an error,
including those ASHA stopped after a rung: the sampler then treats a 1-epoch accuracy as a final
one and is biased towards configs that start fast. ``PaiOptunaSearch`` tells Optuna:

- COMPLETE with the objective values, for a trial that ran its whole budget;
- PRUNED, for a trial stopped early by the scheduler (Optuna keeps its intermediate values, one
  per epoch, and records the last one as the pruned trial's value);
- FAIL, for a trial that raised or diverged (NaN/inf loss).

It also makes seeds a replicate axis: each freshly sampled config is enqueued once more per other
seed, so every config runs with every seed and the sampler never "tunes" the seed.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from paitune.errors import PaituneError, unknown_choice
from paitune.spaces.compile import SEED_PARAM, CompiledSpace

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2", "gp")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)

# Keys of every result the trial function reports (see paitune.search.trainable).
EPOCH_KEY = "epoch"
MAX_EPOCHS_KEY = "max_epochs"
STATUS_KEY = "pai_status"

REPLICATE_ATTR = "replicate_of"  # user attr of an enqueued replicate: the Optuna number it repeats
GRID_ATTR = "grid_point"  # user attr of an enqueued grid point
TUNE_TRIAL_ATTR = "tune_trial_id"  # user attr: the Tune trial id, to join the study with the tables
STATUS_ATTR = "pai_status"  # user attr: completed | stopped | failed | diverged


def make_sampler(name: str, *, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``--sampler NAME``."""
    if name not in SAMPLERS:
        raise unknown_choice("sampler", name, SAMPLERS)
    if name in SINGLE_OBJECTIVE_SAMPLERS and n_objectives > 1:
        raise PaituneError(f"--sampler {name} handles one objective; the space has {n_objectives}: use nsga2 or tpe")
    if name == "tpe":
        # constant_liar: trials running in parallel are treated as bad, so the workers spread out
        # instead of all sampling the same promising region.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name in ("random", "grid"):
        # grid: every point is enqueued up front; the sampler only fills what the queue does not fix.
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)


def trial_outcome(result: dict | None, error: bool) -> str:
    """completed | stopped | failed | diverged, from the last result a trial reported."""
    if error:
        return "failed"
    if not result:
        return "stopped"
    if result.get(STATUS_KEY) == "diverged":
        return "diverged"
    if result.get(EPOCH_KEY, 0) >= result.get(MAX_EPOCHS_KEY, math.inf):
        return "completed"
    return "stopped"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class PaiOptunaSearch(OptunaSearch):
    """OptunaSearch over a compiled space with honest trial states and replicate seeds."""

    def __init__(
        self,
        compiled: CompiledSpace,
        *,
        metric: str | list[str],
        mode: str | list[str],
        sampler: optuna.samplers.BaseSampler,
        storage: optuna.storages.BaseStorage | None = None,
        study_name: str = "paitune",
        grid: bool = False,
    ):
        super().__init__(
            space=compiled.define_by_run,
            metric=metric,
            mode=mode,
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )
        self._seeds = compiled.seeds
        self._grid = grid
        self._reported_steps: dict[str, set[int]] = {}
        if grid and not self._ot_study.trials:
            for point in compiled.grid_points():
                self._ot_study.enqueue_trial(point, user_attrs={GRID_ATTR: True})

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | None:
        fresh = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials[trial_id]
        if fresh:
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            self._enqueue_replicates(ot_trial)
        return config

    def _enqueue_replicates(self, ot_trial: optuna.Trial) -> None:
        attrs = ot_trial.user_attrs
        if self._grid or REPLICATE_ATTR in attrs or GRID_ATTR in attrs or len(self._seeds) < 2:
            return
        drawn = ot_trial.params.get(SEED_PARAM)
        for seed in self._seeds:
            if seed != drawn:
                self._ot_study.enqueue_trial(
                    {**ot_trial.params, SEED_PARAM: seed}, user_attrs={REPLICATE_ATTR: ot_trial.number}
                )

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna keeps intermediate values for single-objective studies only.
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return
        value = result.get(self.metric)
        step = result.get(EPOCH_KEY)
        if trial_id not in self._ot_trials or not _finite(value) or not isinstance(step, int) or step < 1:
            return
        # A trial retried from a checkpoint may report an epoch again; Optuna keeps the first.
        reported = self._reported_steps.setdefault(trial_id, set())
        if step not in reported:
            self._ot_trials[trial_id].report(float(value), step)
            reported.add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and not error:
            # Tune hands the final result (and the one that made ASHA stop the trial) only to
            # on_trial_complete: record it as the last intermediate value first.
            self.on_trial_result(trial_id, result)
        ot_trial = self._ot_trials[trial_id]
        outcome = trial_outcome(result, error)
        ot_trial.set_user_attr(STATUS_ATTR, outcome)
        state, values = TrialState.FAIL, None
        if outcome == "stopped":
            state = TrialState.PRUNED
        elif outcome == "completed":
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            vals = [result.get(m) for m in metrics]
            if all(_finite(v) for v in vals):
                state, values = TrialState.COMPLETE, [float(v) for v in vals]
        self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)
