"""The one module that touches Ray's and Optuna's private APIs, fenced by the versions tested.

paitune needs a few things neither library exposes publicly:

- Ray's ``OptunaSearch`` keeps its study and its Tune-trial -> Optuna-trial map in private
  attributes; paitune's searcher subclasses it and reads and restores both (restart reconciliation).
- Optuna's ``tell`` takes only RUNNING trials, so closing a queued (WAITING) trial when a sweep ends,
  and tagging a trial after it finished, go through the study's storage; re-attaching a
  ``optuna.Trial`` to a stored trial needs its storage id.
- Optuna's samplers read their study's trials through ``Study._get_trials``; a sampler that may
  read only part of its history (``paitune.search.samplers.BoundedHistory``) is handed a view that
  answers it.
- Optuna's NSGA-II scans its whole study for each suggestion (the newest generation, a
  generation's cached parents); ``flat_nsga2_sampler`` keeps both as trials are told instead.
- Tune keeps running statistics of every number a trial reported, in its run metadata, and writes
  them for every trial at each snapshot; paitune drops them once a trial ended
  (``paitune.search.lean_state``).
- Tune's experiment snapshots race their own background upload; paitune serializes them by wrapping
  a method of Tune's private experiment-checkpoint manager (``paitune.search.tune_state``).

Each use is a small function here, so a new Ray or Optuna release is checked in one place.
``check_versions`` refuses versions outside the tested range with one line (before Ray starts);
``PAITUNE_UNTESTED_VERSIONS=1`` lets a user try anyway.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
from collections.abc import Container
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import TYPE_CHECKING

from paitune.errors import PaituneError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, TrialState

# Major.minor of each library these internals were tested with; pyproject.toml pins the same range.
TESTED = {"ray": "2.60", "optuna": "5.0"}
ALLOW_UNTESTED_ENV = "PAITUNE_UNTESTED_VERSIONS"


def version(package: str) -> str:
    """The package's version: its installed metadata, or its ``__version__`` where it was copied
    onto the path without any (an unpacked wheel)."""
    try:
        return installed_version(package)
    except PackageNotFoundError:
        return importlib.import_module(package).__version__


def check_versions() -> None:
    """PaituneError (one line) if Ray or Optuna is outside the tested range."""
    if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
        return
    for package, tested in TESTED.items():
        found = version(package)
        if ".".join(found.split(".")[:2]) != tested:
            raise PaituneError(
                f"paitune is tested with {package} {tested}.x and uses its internals, found {package} {found}: "
                f'install "{package}=={tested}.*" (or set {ALLOW_UNTESTED_ENV}=1 to try anyway)'
            )


# --- Ray Tune's OptunaSearch ------------------------------------------------------------------


def ray_optuna_study(search):
    """The ``optuna.Study`` a ``ray.tune.search.optuna.OptunaSearch`` asks and tells."""
    return search._ot_study


def ray_optuna_trials(search) -> dict:
    """Tune trial id -> the live ``optuna.Trial`` it was asked as (the dict itself, to update)."""
    return search._ot_trials


def set_ray_optuna_trials(search, trials: dict) -> None:
    search._ot_trials = trials


def ray_completed_trials(search) -> set:
    """Tune trial ids whose result the search has already told its study."""
    return search._completed_trials


# --- Optuna's storage -------------------------------------------------------------------------


def attach_trial(study, frozen):
    """A live ``optuna.Trial`` for a stored trial (to report to or tell it after a restart)."""
    import optuna

    return optuna.Trial(study, frozen._trial_id)


def stored_trial(study, storage_id: int):
    """The stored ``FrozenTrial`` with this storage id."""
    return study._storage.get_trial(storage_id)


def storage_id(frozen) -> int:
    return frozen._trial_id


def set_trial_attr(study, frozen, key: str, value) -> None:
    """Set a user attribute of a trial in any state (``Trial.set_user_attr`` needs a live one)."""
    study._storage.set_trial_user_attr(frozen._trial_id, key, value)


def close_waiting_trial(study, frozen, state) -> None:
    """End a WAITING (queued, never asked) trial in ``state``: ``tell`` takes only RUNNING ones."""
    study._storage.set_trial_state_values(frozen._trial_id, state)


# --- Optuna's samplers ---------------------------------------------------------------------------


class StudyHistoryView:
    """A study as a sampler sees it: every unfinished trial, the last ``limit`` finished ones
    (``paitune.search.samplers.BoundedHistory``). Optuna's samplers read a study's trials through
    its private ``_get_trials``; the view answers that call too."""

    def __init__(self, study: optuna.Study, limit: int):
        self._study = study
        self._limit = limit

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _trim(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        finished = [t for t in trials if t.state.is_finished()]
        if len(finished) <= self._limit:
            return trials
        keep = {t.number for t in finished[-self._limit :]}
        return [t for t in trials if not t.state.is_finished() or t.number in keep]

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False):
        trimmed = self._trim(self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache))
        return copy.deepcopy(trimmed) if deepcopy else trimmed

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states, use_cache=False)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def flat_nsga2_sampler(**kwargs):
    """Optuna's ``NSGAIISampler(**kwargs)`` whose cost per suggestion does not grow with its study.

    Optuna's genetic samplers find a new trial's generation by scanning every finished trial of
    the study (the newest generation and how many trials it has), and fetch a generation's cached
    parents by scanning every trial: each suggestion costs O(trials), a sweep O(trials^2). This
    subclass keeps the count of finished trials per generation as they are told (one scan of the
    study on its first call, which also covers a resumed study) and each generation's parents
    once fetched; both answer exactly what the scans would. It keeps Optuna's attribute keys, so
    a study run by either sampler continues under the other."""
    return _flat_nsga2_class()(**kwargs)


@functools.cache
def _flat_nsga2_class():
    # Built on first use, so importing this module does not import Optuna.
    from optuna.samplers import NSGAIISampler
    from optuna.trial import TrialState

    class FlatNSGAIISampler(NSGAIISampler):
        def __init__(self, **options):
            super().__init__(**options)
            self._per_generation: dict[int, int] | None = None  # finished COMPLETE trials per generation
            self._counted: set[int] = set()
            self._parents: dict[int, list] = {}

        def _count(self, trial) -> None:
            if trial.number not in self._counted:
                self._counted.add(trial.number)
                generation = trial.system_attrs.get(self._get_generation_key(), -1)
                self._per_generation[generation] = self._per_generation.get(generation, 0) + 1

        def get_trial_generation(self, study, trial) -> int:
            generation = trial.system_attrs.get(self._get_generation_key(), None)
            if generation is not None:
                return generation
            if self._per_generation is None:
                self._per_generation = {}
                for done in study._get_trials(deepcopy=False, states=[TrialState.COMPLETE], use_cache=True):
                    self._count(done)
            newest = max((g for g in self._per_generation if g >= 0), default=0)
            if self._per_generation.get(newest, 0) >= self._population_size:
                newest += 1
            study._storage.set_trial_system_attr(trial._trial_id, self._get_generation_key(), newest)
            return newest

        def get_parent_population(self, study, generation: int) -> list:
            if generation in self._parents:
                return list(self._parents[generation])
            parents = super().get_parent_population(study, generation)
            # Optuna returns the parents in selection order when it selects them, and in the
            # study's order when it reads them back from its cache: so does this.
            self._parents[generation] = sorted(parents, key=lambda t: t.number)
            return parents

        def after_trial(self, study, trial, state, values) -> None:
            super().after_trial(study, trial, state, values)
            if state == TrialState.COMPLETE and self._per_generation is not None:
                self._count(trial)

    # Optuna names a genetic sampler's attribute keys after its class; keep NSGA-II's.
    FlatNSGAIISampler._GENERATION_KEY = NSGAIISampler._GENERATION_KEY
    FlatNSGAIISampler._PARENT_CACHE_KEY_PREFIX = NSGAIISampler._PARENT_CACHE_KEY_PREFIX
    return FlatNSGAIISampler


# --- Tune's per-trial run metadata -------------------------------------------------------------


def forget_metric_statistics(trial) -> None:
    """Drop Tune's running statistics (min / max / mean / last-n per reported number) of a trial.
    Assigning through the metadata object invalidates its cached JSON, so the next snapshot
    writes the trial without them."""
    metadata = trial.run_metadata
    metadata.metric_analysis = {}
    metadata.metric_n_steps = {}


# --- Tune's experiment checkpoint manager -----------------------------------------------------


def experiment_checkpoint_manager_class():
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    return _ExperimentCheckpointManager


def wait_for_upload(manager) -> None:
    """Block until the manager's background upload of the last snapshot has finished."""
    manager._storage.syncer.wait()
