"""Repeats of a config within one study: seed replicates, queued on purpose, and sampled
repeats, told and never run.

Seeds are a replicate axis: each freshly sampled config is enqueued once more per other seed
(``replicate_params``), so every config runs with every seed and the sampler never "tunes" the
seed.

On a finite space the samplers draw configs they have drawn before (TPE keeps returning to its
best region; a third of the draws of a 36-config space were repeats). A repeat would train the
same config with the same seed again, bit for bit, so it is never run: it is told to Optuna at
once with the earlier trial's outcome (``tell_duplicate``: the values, or the intermediate values
of a PRUNED trial; FAIL while the earlier one is still running or queued), marked
``duplicate_of``, and the sampler draws again — Optuna's own advice for samplers that repeat (its
FAQ), done inside the searcher. After ``MAX_REDRAWS`` repeats in a row, a finite space's untried
configs are enumerated and one is run (user attr ``untried_fill``); only a space with no untried
config left runs a repeat. ``AskedConfigs`` knows which config each trial of the study runs;
``PaiOptunaSearch.suggest`` (``paitune.search.searcher``) draws again.
"""

from __future__ import annotations

import random

import optuna
from optuna.trial import TrialState

from paitune.errors import PaituneError
from paitune.search import internals
from paitune.search.study_attrs import (
    DUPLICATE_ATTR,
    GRID_ATTR,
    ORPHAN_ATTR,
    REPLICATE_ATTR,
    RETRY_ATTR,
    TUNE_TRIAL_ATTR,
)
from paitune.spaces.compile import SEED_PARAM, CompiledSpace

MAX_REDRAWS = 20  # sampler repeats in a row before an untried point of a finite space is picked
MAX_ENUMERATED = 100_000  # a finite space with more configs than this is never enumerated
QUEUED = -1  # the storage id recorded for a queued config (it gets a real one when asked)


def config_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


class AskedConfigs:
    """The configs one study has asked for (the seed included), to tell a sampled repeat from a
    new config, and the configs of a finite space, to find one not asked for yet."""

    def __init__(self, compiled: CompiledSpace, study: optuna.Study):
        self._compiled = compiled
        self._study = study
        self._asked: dict[tuple, int] | None = None  # read from the study at first use
        self._points: list[dict] | None = None  # every config of a finite space, once enumerated
        self._point_keys: set[tuple] = set()

    def forget(self) -> None:
        """Read the study again at the next use (a restore or a restart recovery changed it)."""
        self._asked = None

    def asked(self) -> dict[tuple, int]:
        """Config (every parameter, the seed included) -> storage id of the trial that runs it:
        the study's trials that ran or run, and the queued ones (their fixed parameters)."""
        if self._asked is None:
            asked = {}
            for frozen in self._study.get_trials(deepcopy=False):
                if DUPLICATE_ATTR in frozen.user_attrs or frozen.user_attrs.get(ORPHAN_ATTR):
                    continue
                params = (
                    frozen.params if frozen.state != TrialState.WAITING else frozen.system_attrs.get("fixed_params")
                )
                if params:
                    asked.setdefault(config_key(params), internals.storage_id(frozen))
            self._asked = asked
        return self._asked

    def remember(self, params: dict, storage_id: int) -> None:
        self.asked()[config_key(params)] = storage_id

    def remember_queued(self, params: dict) -> None:
        self.asked().setdefault(config_key(params), QUEUED)

    def earlier(self, ot_trial: optuna.Trial):
        """The earlier trial with the same config as a freshly sampled ``ot_trial``, or None
        (always None for configs fixed by the queue: grid points, replicates, retries)."""
        attrs = ot_trial.user_attrs
        if any(key in attrs for key in (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR)):
            return None
        key = config_key(ot_trial.params)
        storage_id = self.asked().get(key)
        if storage_id is None or storage_id == internals.storage_id(ot_trial):
            return None
        if storage_id == QUEUED:  # a queued replicate (or asked since): find it, a rare path
            candidates = (
                t for t in self._study.get_trials(deepcopy=False)
                if internals.storage_id(t) != internals.storage_id(ot_trial) and DUPLICATE_ATTR not in t.user_attrs
                and not t.user_attrs.get(ORPHAN_ATTR)
                and config_key(t.params or t.system_attrs.get("fixed_params") or {}) == key
            )  # fmt: skip
            return next(candidates, None)
        return internals.stored_trial(self._study, storage_id)

    def points(self) -> list[dict]:
        """Every config (with a seed) of a finite space, enumerated once; [] when not finite."""
        if self._points is None:
            try:
                bounded = self._compiled.grid_size_bound() <= MAX_ENUMERATED
                self._points = self._compiled.grid_points() if bounded else []
            except PaituneError:  # a continuous range or a searched allocation: not enumerable
                self._points = []
            self._point_keys = {config_key(point) for point in self._points}
        return self._points

    def exhausted(self) -> bool:
        """Whether this is a finite space every config of which (with every seed) has been asked
        for: a new draw could only repeat one, training the same config and seed bit for bit."""
        if not self.points():
            return False
        asked = self.asked()
        # Cheap before the subset test: fewer configs asked than the space holds.
        return len(asked) >= len(self._point_keys) and self._point_keys <= asked.keys()

    def untried_point(self) -> dict | None:
        """A config (with a seed) of a finite space that no trial has been asked for; None when
        there is none left or the space is not finite."""
        taken = self.asked()
        rest = [point for point in self.points() if config_key(point) not in taken]
        # Seeded by the study's size: reproducible, and not always the grid's first corner.
        return random.Random(len(self._study.get_trials(deepcopy=False))).choice(rest) if rest else None


def tell_duplicate(study: optuna.Study, ot_trial: optuna.Trial, earlier) -> None:
    """Close the repeat ``ot_trial`` with ``earlier``'s outcome, without running it."""
    ot_trial.set_user_attr(DUPLICATE_ATTR, earlier.number)
    if earlier.state == TrialState.COMPLETE:
        study.tell(ot_trial, earlier.values)
    elif earlier.state == TrialState.PRUNED:
        for step, value in sorted(earlier.intermediate_values.items()):
            ot_trial.report(value, step)
        study.tell(ot_trial, state=TrialState.PRUNED)
    else:  # failed, or still running or queued: nothing to learn from it yet
        study.tell(ot_trial, state=TrialState.FAIL)


def runs_once_per_seed(attrs: dict, seeds: list, grid: bool) -> bool:
    """Whether a trial with these user attrs is a draw that runs once per seed (not itself a
    replicate, grid point, retry or told repeat)."""
    taken = (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR, DUPLICATE_ATTR)
    return not grid and len(seeds) >= 2 and not any(key in attrs for key in taken)


def replicate_params(params: dict, seeds: list, covered: set) -> list[dict]:
    """``params`` with each seed not in ``covered``, in the order of ``seeds``."""
    return [{**params, SEED_PARAM: seed} for seed in seeds if seed not in covered]


def covered_seeds(trials) -> list[tuple[optuna.trial.FrozenTrial, set]]:
    """Each trial named to Tune, with the seeds its config runs with already: its own and those
    of its queued replicates. A fresh draw queues its replicates right after it is named (one
    enqueue per other seed), so a driver killed in between left some of them unqueued."""
    seeds_of: dict[int, set] = {}
    for frozen in trials:
        if REPLICATE_ATTR in frozen.user_attrs and DUPLICATE_ATTR not in frozen.user_attrs:
            params = frozen.params or frozen.system_attrs.get("fixed_params") or {}
            seeds_of.setdefault(frozen.user_attrs[REPLICATE_ATTR], set()).add(params.get(SEED_PARAM))
    return [
        (frozen, seeds_of.get(frozen.number, set()) | {frozen.params.get(SEED_PARAM)})
        for frozen in trials
        if TUNE_TRIAL_ATTR in frozen.user_attrs
    ]
