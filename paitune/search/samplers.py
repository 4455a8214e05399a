"""The Optuna samplers behind ``--sampler``, and a bound on the history the model-based ones read.

Each context of a sweep has its own study and its own sampler (``paitune.search.contexts``), so a
sampler's history is one context's trials. TPE and the GP sampler still rebuild their model over
that whole history at every ``suggest_*``: their cost per trial grows with the context, and a
sweep's with its square. ``BoundedHistory`` hands such a sampler a view of its study that holds
the trials still running or queued and only the ``limit`` most recently finished ones: the
model's cost per trial stops growing at ``limit``, and a context with fewer finished trials than
that is sampled exactly as before. The view is deterministic (trial numbers order it), so the
same seed gives the same suggestions.
"""

from __future__ import annotations

import optuna
from optuna.samplers import BaseSampler

from paitune.config.sweep import SAMPLERS  # declared with the sweep options
from paitune.errors import PaituneError, unknown_choice
from paitune.search.internals import StudyHistoryView, flat_nsga2_sampler

SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
# The finished trials per context a model-based sampler reads: TPE's Parzen estimators are linear
# in it, the GP's fit cubic. Random, grid, NSGA-II (its generation bookkeeping kept as trials are
# told: paitune.search.internals.flat_nsga2_sampler) and CMA-ES (its own incremental state) need
# no bound.
HISTORY_LIMITS = {"tpe": 1000, "gp": 300}


class BoundedHistory(BaseSampler):
    """``sampler`` reading at most ``limit`` finished trials of its study (see the module doc)."""

    def __init__(self, sampler: BaseSampler, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.sampler = sampler
        self.limit = limit

    def _view(self, study):
        return StudyHistoryView(study, self.limit)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def make_sampler(name: str, *, seed: int | None, n_objectives: int) -> BaseSampler:
    """The Optuna sampler for ``--sampler NAME`` (one per context study)."""
    if name not in SAMPLERS:
        raise unknown_choice("sampler", name, SAMPLERS)
    if name in SINGLE_OBJECTIVE_SAMPLERS and n_objectives > 1:
        raise PaituneError(f"--sampler {name} handles one objective; the space has {n_objectives}: use nsga2 or tpe")
    if name == "tpe":
        # constant_liar: trials running in parallel are treated as bad, so the workers spread out
        # instead of all sampling the same promising region.
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    elif name in ("random", "grid"):
        # grid: every point is enqueued up front; the sampler only fills what the queue does not fix.
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif name == "cmaes":
        sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    elif name == "nsga2":
        sampler = flat_nsga2_sampler(seed=seed)
    else:
        sampler = optuna.samplers.GPSampler(seed=seed)
    limit = HISTORY_LIMITS.get(name)
    return BoundedHistory(sampler, limit) if limit else sampler
