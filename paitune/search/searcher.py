"""Optuna inside Ray Tune, telling Optuna how each trial really ended.

Ray's stock ``OptunaSearch`` tells Optuna COMPLETE for every trial that ends without an error,
including those ASHA stopped after a rung: the sampler then treats a 1-epoch accuracy as a final
one and is biased towards configs that start fast. ``PaiOptunaSearch`` tells Optuna:

- COMPLETE with the objective values, for a trial that ran its whole budget;
- PRUNED, for a trial stopped early by the scheduler (Optuna keeps its intermediate values, one
  per epoch, and records the last one as the pruned trial's value);
- FAIL, for a trial that raised or diverged (NaN/inf loss).

The study lives in Optuna's storage (a journal file), the source of truth across a driver
restart: a trial the study already holds as finished is never told again (a trial restored from
its checkpoint ends a second time). Tune's experiment snapshot, what a resume restores, lags the
study, so before its first suggestion a driver squares the two (``_reconcile``). A trial of the
study that the restored Tune holds is Tune's to run (``TuneTrialIds``, filled by the scheduler);
one it does not hold whose row is in the Parquet trials table finished for good; any other one —
taken from the queue but never named, or named after the snapshot and not written — has its
config enqueued again (user attr ``retry_of``), so the sweep still runs it; a fresh draw never named
ran nothing and is not retried (the sampler draws again). One still RUNNING is told FAIL and marked
``orphaned`` first, a finished one keeps its outcome and is superseded by the retry. The sweep's budget (Tune trials, dense references included) is kept here, not by Tune:
Tune's own count restarts from its snapshot, which may miss trials that finished after it.

Dense references (one unpruned trial per context, ``CompiledSpace.dense_references``) are handed
to Tune first, straight from a queue: they never become Optuna trials, so the sampler neither
spends budget on them nor learns from them.

It also makes seeds a replicate axis: each freshly sampled config is enqueued once more per other
seed, so every config runs with every seed and the sampler never "tunes" the seed.

On a finite space the samplers draw configs they have drawn before (TPE keeps returning to its
best region; a third of the draws of a 36-config space were repeats). A repeat would train the
same config with the same seed again, bit for bit, so it is never run: it is told to Optuna at
once with the earlier trial's outcome (the values, or the intermediate values of a PRUNED trial;
FAIL while the earlier one is still running or queued), marked ``duplicate_of``, and the sampler
draws again — Optuna's own advice for samplers that repeat (its FAQ), done inside the searcher.
After ``MAX_REDRAWS`` repeats in a row, a finite space's untried configs are enumerated and one is
run (user attr ``untried_fill``); only a space with no untried config left runs a repeat.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from paitune.errors import PaituneError
from paitune.results.rows import EPOCH_KEY, HISTORY_KEY, MAX_EPOCHS_KEY, STATUS_KEY, written_trial_ids
from paitune.search import internals
from paitune.search.samplers import SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS, make_sampler  # noqa: F401 (re-exported)
from paitune.search.tune_trials import TuneTrialIds
from paitune.spaces.compile import SEED_PARAM, CompiledSpace

REPLICATE_ATTR = "replicate_of"  # user attr of an enqueued replicate: the Optuna number it repeats
GRID_ATTR = "grid_point"  # user attr of an enqueued grid point
TUNE_TRIAL_ATTR = "tune_trial_id"  # user attr: the Tune trial id, to join the study with the tables
STATUS_ATTR = "pai_status"  # user attr: completed | stopped | failed | diverged
ORPHAN_ATTR = "orphaned"  # user attr: asked by a driver that died before Tune recorded the trial
RETRY_ATTR = "retry_of"  # user attr of an enqueued retry: the Optuna number of the orphan it replaces
DUPLICATE_ATTR = "duplicate_of"  # user attr of a sampled config that had been asked for already
FILL_ATTR = "untried_fill"  # user attr: an untried point picked after MAX_REDRAWS repeats in a row
DENSE_ATTR = "dense_references"  # study user attr: Tune trial id -> index of the dense reference it runs
QUEUE_ATTRS = (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR, FILL_ATTR)  # a trial with one was taken from the queue
MAX_REDRAWS = 20  # sampler repeats in a row before an untried point of a finite space is picked
MAX_ENUMERATED = 100_000  # a finite space with more configs than this is never enumerated
QUEUED = -1  # the storage id recorded for a queued config (it gets a real one when asked)


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


NOT_RUN_ATTR = "not_run"  # user attr: queued (a seed replicate or a retry) but the sweep ended first


def fail_unfinished(study: optuna.Study) -> list[int]:
    """When a sweep has ended: fail the trials still RUNNING (asked by a driver that died, for a
    Tune trial the resumed Tune never ran), marked ``orphaned``, and those still WAITING (queued
    after the last trial was asked for), marked ``not_run``; returns their numbers."""
    failed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        internals.set_trial_attr(study, frozen, ORPHAN_ATTR, True)
        study.tell(frozen.number, state=TrialState.FAIL)
        failed.append(frozen.number)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # Optuna's tell() takes only RUNNING trials; a queued one is closed in its storage.
        internals.set_trial_attr(study, frozen, NOT_RUN_ATTR, True)
        internals.close_waiting_trial(study, frozen, TrialState.FAIL)
        failed.append(frozen.number)
    return failed


def superseded_trials(trials) -> set[int]:
    """Numbers of the trials a retry replaced (an orphan, or a trial whose rows a dead driver
    never wrote): the study's trials without a row of their own in the tables."""
    return {t.user_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.user_attrs}


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
        dense: list[dict] | None = None,
        budget: int | None = None,
        results=None,
        tune_trials: TuneTrialIds | None = None,
    ):
        """``budget``: Tune trials to run, dense references included (None: Tune's num_samples
        limits them); ``results``: the folder (or ``paitune.results.storage.Location``) holding the
        Parquet tables; ``tune_trials``: the registry the scheduler fills."""
        super().__init__(
            space=compiled.define_by_run,
            metric=metric,
            mode=mode,
            sampler=sampler,
            storage=storage,
            study_name=study_name,
        )
        self._seeds = compiled.seeds
        self._compiled = compiled
        self._finite_points: list[dict] | None = None  # every config of a finite space, once enumerated
        self._grid = grid
        self._reported_steps: dict[str, set[int]] = {}
        self._dense = list(dense or [])
        self._dense_issued: dict[str, int] = {}  # Tune trial id -> index into self._dense
        self._budget = budget
        self._issued = 0  # Tune trials this sweep has: counted by _reconcile, then one per suggestion
        self._results = results
        self._tune_trials = tune_trials
        if grid and not self.study.trials:
            for point in compiled.grid_points():
                self._enqueue(point, {GRID_ATTR: True})
        # Squared with the study once, before this driver's first suggestion (_reconcile).
        self._orphans_checked = False

    @property
    def study(self) -> optuna.Study:
        return internals.ray_optuna_study(self)

    @property
    def live_trials(self) -> dict:
        """Tune trial id -> the ``optuna.Trial`` it was asked as (Ray's OptunaSearch keeps it)."""
        return internals.ray_optuna_trials(self)

    @property
    def told(self) -> set:
        """Tune trial ids whose result the study has been told."""
        return internals.ray_completed_trials(self)

    def is_dense(self, trial_id: str) -> bool:
        return trial_id in self._dense_issued

    def suggest(self, trial_id: str) -> dict | str | None:
        if not getattr(self, "_orphans_checked", False):
            self._reconcile()
        if trial_id in self._dense_issued:
            return dict(self._dense[self._dense_issued[trial_id]])
        fresh = trial_id not in self.live_trials
        if fresh and self._budget is not None and self._issued >= self._budget:
            return Searcher.FINISHED
        pending = sorted(set(range(len(self._dense))) - set(self._dense_issued.values()))
        if pending and fresh:
            self._dense_issued[trial_id] = pending[0]
            self.study.set_user_attr(DENSE_ATTR, self._dense_issued)
            self._issued += 1
            return dict(self._dense[pending[0]])
        if fresh:
            self._issued += 1
        config = self._ask(trial_id)
        ot_trial = self.live_trials[trial_id]
        if fresh:
            for redraw in range(MAX_REDRAWS + 1):
                earlier = self._earlier_same_config(ot_trial)
                if earlier is None:
                    break
                point = self._untried_point() if redraw == MAX_REDRAWS else None
                if redraw == MAX_REDRAWS and point is None:
                    break  # nothing untried is left: the repeat runs
                self._tell_duplicate(ot_trial, earlier)
                del self.live_trials[trial_id]
                if point is not None:
                    self._enqueue(point, {FILL_ATTR: True})
                config = self._ask(trial_id)
                ot_trial = self.live_trials[trial_id]
            self._remember_config(ot_trial.params, internals.storage_id(ot_trial))
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            self._enqueue_replicates(ot_trial)
        return config

    # -- repeats of a config -------------------------------------------------------------------
    @staticmethod
    def _config_key(params: dict) -> tuple:
        return tuple(sorted(params.items()))

    def _remember_config(self, params: dict, storage_id: int) -> None:
        self._configs_asked()[self._config_key(params)] = storage_id

    def _configs_asked(self) -> dict[tuple, int]:
        """Config (every parameter, the seed included) -> storage id of the trial that runs it:
        the study's trials that ran or run, and the queued ones (their fixed parameters)."""
        if getattr(self, "_asked_configs", None) is None:
            asked = {}
            for frozen in self.study.get_trials(deepcopy=False):
                if DUPLICATE_ATTR in frozen.user_attrs or frozen.user_attrs.get(ORPHAN_ATTR):
                    continue
                params = (
                    frozen.params if frozen.state != TrialState.WAITING else frozen.system_attrs.get("fixed_params")
                )
                if params:
                    asked.setdefault(self._config_key(params), internals.storage_id(frozen))
            self._asked_configs = asked
        return self._asked_configs

    def _earlier_same_config(self, ot_trial: optuna.Trial):
        """The earlier trial with the same config as a freshly sampled ``ot_trial``, or None
        (always None for configs fixed by the queue: grid points, replicates, retries)."""
        attrs = ot_trial.user_attrs
        if any(key in attrs for key in (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR)):
            return None
        key = self._config_key(ot_trial.params)
        storage_id = self._configs_asked().get(key)
        if storage_id is None or storage_id == internals.storage_id(ot_trial):
            return None
        if storage_id == QUEUED:  # a queued replicate (or asked since): find it, a rare path
            candidates = (
                t for t in self.study.get_trials(deepcopy=False)
                if internals.storage_id(t) != internals.storage_id(ot_trial) and DUPLICATE_ATTR not in t.user_attrs
                and not t.user_attrs.get(ORPHAN_ATTR)
                and self._config_key(t.params or t.system_attrs.get("fixed_params") or {}) == key
            )  # fmt: skip
            return next(candidates, None)
        return internals.stored_trial(self.study, storage_id)

    def _finite(self) -> list[dict]:
        """Every config (with a seed) of a finite space, enumerated once; [] when not finite."""
        if self._finite_points is None:
            try:
                bounded = self._compiled.grid_size_bound() <= MAX_ENUMERATED
                self._finite_points = self._compiled.grid_points() if bounded else []
            except PaituneError:  # a continuous range or a searched allocation: not enumerable
                self._finite_points = []
            self._finite_keys = {self._config_key(point) for point in self._finite_points}
        return self._finite_points

    # -- the queue (seed replicates, grid points, retries, untried fills) --------------------------
    def _enqueue(self, params: dict, user_attrs: dict) -> None:
        self.study.enqueue_trial(params, user_attrs=user_attrs)
        self._waiting = self.waiting() + 1

    def waiting(self) -> int:
        """Queued configs not yet asked for: counted from the study once, then kept here (asking
        the storage on every suggestion would cost a pass over all of the study's trials)."""
        if getattr(self, "_waiting", None) is None:
            self._waiting = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return self._waiting

    def _ask(self, trial_id: str):
        config = OptunaSearch.suggest(self, trial_id)
        if any(key in self.live_trials[trial_id].user_attrs for key in QUEUE_ATTRS):
            self._waiting = max(0, self.waiting() - 1)  # Optuna's ask takes a queued config first
        return config

    def exhausted(self) -> bool:
        """Whether this is a finite space every config of which (with every seed) has been asked
        for: a new draw could only repeat one, training the same config and seed bit for bit."""
        if not self._finite():
            return False
        asked = self._configs_asked()
        # Cheap before the subset test: fewer configs asked than the space holds.
        return len(asked) >= len(self._finite_keys) and self._finite_keys <= asked.keys()

    def _untried_point(self) -> dict | None:
        """A config (with a seed) of a finite space that no trial has been asked for; None when
        there is none left or the space is not finite."""
        taken = self._configs_asked()
        rest = [point for point in self._finite() if self._config_key(point) not in taken]
        # Seeded by the study's size: reproducible, and not always the grid's first corner.
        return random.Random(len(self.study.get_trials(deepcopy=False))).choice(rest) if rest else None

    def _tell_duplicate(self, ot_trial: optuna.Trial, earlier) -> None:
        """Close the repeat ``ot_trial`` with ``earlier``'s outcome, without running it."""
        ot_trial.set_user_attr(DUPLICATE_ATTR, earlier.number)
        if earlier.state == TrialState.COMPLETE:
            self.study.tell(ot_trial, earlier.values)
        elif earlier.state == TrialState.PRUNED:
            for step, value in sorted(earlier.intermediate_values.items()):
                ot_trial.report(value, step)
            self.study.tell(ot_trial, state=TrialState.PRUNED)
        else:  # failed, or still running or queued: nothing to learn from it yet
            self.study.tell(ot_trial, state=TrialState.FAIL)

    def _has_replicates(self, attrs: dict) -> bool:
        """Whether a trial with these user attrs is a draw that runs once per seed (not itself a
        replicate, grid point, retry or told repeat)."""
        taken = (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR, DUPLICATE_ATTR)
        return not self._grid and len(self._seeds) >= 2 and not any(key in attrs for key in taken)

    def _enqueue_replicates(self, ot_trial: optuna.Trial, covered=None) -> None:
        """Queue ``ot_trial``'s config with each seed not in ``covered`` (default: its own)."""
        if not self._has_replicates(ot_trial.user_attrs):
            return
        covered = {ot_trial.params.get(SEED_PARAM)} if covered is None else covered
        for seed in self._seeds:
            if seed not in covered:
                params = {**ot_trial.params, SEED_PARAM: seed}
                self._enqueue(params, {REPLICATE_ATTR: ot_trial.number})
                self._configs_asked().setdefault(self._config_key(params), QUEUED)

    def _requeue_missing_replicates(self, trials) -> None:
        """A fresh draw queues its replicates right after it is named (one enqueue per other
        seed): a driver killed in between left some of them unqueued. Queue those again."""
        seeds_of: dict[int, set] = {}
        for frozen in trials:
            if REPLICATE_ATTR in frozen.user_attrs and DUPLICATE_ATTR not in frozen.user_attrs:
                params = frozen.params or frozen.system_attrs.get("fixed_params") or {}
                seeds_of.setdefault(frozen.user_attrs[REPLICATE_ATTR], set()).add(params.get(SEED_PARAM))
        for frozen in trials:
            if TUNE_TRIAL_ATTR in frozen.user_attrs:
                covered = seeds_of.get(frozen.number, set()) | {frozen.params.get(SEED_PARAM)}
                self._enqueue_replicates(frozen, covered)

    def _finished_in_storage(self, trial_id: str) -> bool:
        # Only a trial told before a driver restart can be finished without this driver having
        # told it, so the study is read once, on restore, not on every result.
        return trial_id in getattr(self, "_finished_before_restore", ())

    # Tune saves the searcher into its snapshot after every step and restores it on --resume.
    # The study itself is in Optuna's storage; the snapshot needs only which Tune trial is which
    # Optuna trial, as JSON (stock OptunaSearch pickles its whole __dict__).
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as handle:
            json.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            self.set_state(json.load(handle))

    def get_state(self) -> dict:
        return {
            "trials": {tid: t.number for tid, t in self.live_trials.items()},
            "completed": sorted(self.told),
            "reported": {tid: sorted(steps) for tid, steps in self._reported_steps.items()},
            "dense": self._dense_issued,
        }

    def set_state(self, state: dict) -> None:
        # The study, not the saved map, says which Optuna trial is which Tune trial: Tune uploads
        # its snapshot file by file, so a driver killed mid-upload can leave a searcher state
        # older than the trial table it is restored with.
        internals.set_ray_optuna_trials(
            self,
            {
                t.user_attrs[TUNE_TRIAL_ATTR]: internals.attach_trial(self.study, t)
                for t in self.study.get_trials(deepcopy=False)
                if TUNE_TRIAL_ATTR in t.user_attrs and not t.user_attrs.get(ORPHAN_ATTR)
            },
        )
        self.told.clear()
        self.told.update(state["completed"])
        self._asked_configs = None
        self._waiting = None
        self._finished_before_restore = {
            t.user_attrs[TUNE_TRIAL_ATTR]
            for t in self.study.get_trials(deepcopy=False)
            if TUNE_TRIAL_ATTR in t.user_attrs and t.state.is_finished()
        }
        self._reported_steps = {tid: set(steps) for tid, steps in state["reported"].items()}
        # The trials the restored Tune holds are not known yet (the scheduler learns them next):
        # the first suggestion squares the study with them (_reconcile).
        self._orphans_checked = False

    def _reconcile(self) -> None:
        """Square the study with what this driver's Tune holds, before its first suggestion.

        A trial the dead driver asked for is the restored Tune's to run if Tune holds it, and
        finished for good if its Parquet row exists; any other one (asked but never named, or
        named after Tune's last snapshot and not written) has its config queued again, so the
        sweep still runs it (one still RUNNING is told FAIL and marked orphaned first), unless it
        was a fresh draw never named to Tune: nothing of it ran, the sampler draws again. The
        experiment lock guarantees no other live driver is asking. Counts the budget used so far."""
        self._orphans_checked = True
        held = self._tune_trials.ids if self._tune_trials is not None else set()
        written = written_trial_ids(self._results) if self._results is not None else set()
        used = 0
        trials = self.study.get_trials(deepcopy=False)
        retried = superseded_trials(trials)
        for frozen in trials:
            attrs = frozen.user_attrs
            if frozen.state == TrialState.WAITING or DUPLICATE_ATTR in attrs or frozen.number in retried:
                continue
            tid = attrs.get(TUNE_TRIAL_ATTR)
            if tid is not None and (tid in held or tid in written):
                used += 1
                continue
            if tid is None and frozen.state != TrialState.RUNNING:
                continue
            if frozen.state == TrialState.RUNNING:
                internals.set_trial_attr(self.study, frozen, ORPHAN_ATTR, True)
                self.study.tell(frozen.number, state=TrialState.FAIL)
            # else: told, but the driver died before its rows were written (Tune tells the
            # searcher before the callbacks). Optuna keeps its outcome (a finished trial takes no
            # new attrs); the retry, whose retry_of names it, supersedes it in the tables.
            # What is owed again: a trial named to Tune, its whole config (named only once drawn).
            # One never named ran nothing, and its params may be partial (a driver killed inside
            # the ask): taken from the queue (a replicate, grid point or retry), it still owes the
            # queued config, whole in fixed_params; a fresh draw owes nothing, the sampler draws
            # again (retrying its partial draw ran a config twice: its seed drawn anew, it matched
            # a later draw's replicate).
            fixed = frozen.system_attrs.get("fixed_params") or {}
            params = dict((frozen.params or fixed) if tid is not None else fixed)
            if params:
                kept = {k: v for k, v in attrs.items() if k in (REPLICATE_ATTR, GRID_ATTR)}
                self._enqueue(params, {**kept, RETRY_ATTR: frozen.number})
            if tid is not None:
                self.live_trials.pop(tid, None)
        self._requeue_missing_replicates(self.study.get_trials(deepcopy=False))
        issued = {tid: int(i) for tid, i in self.study.user_attrs.get(DENSE_ATTR, {}).items()}
        # A dense reference neither held nor written runs again, under a new Tune trial.
        self._dense_issued = {tid: i for tid, i in issued.items() if tid in held or tid in written}
        if self._dense_issued != issued:
            self.study.set_user_attr(DENSE_ATTR, self._dense_issued)
        self._issued = used + len(self._dense_issued)
        self._asked_configs = None
        self._waiting = None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna keeps intermediate values for single-objective studies only.
        if isinstance(self.metric, list) or trial_id in self.told:
            return
        if trial_id in self.live_trials and self._finished_in_storage(trial_id):
            return
        if trial_id not in self.live_trials:
            return
        # A report carries the epochs the trial ran since its previous report (it reports only
        # where the scheduler decides, or when a progress interval passed) and, after a retry,
        # the epochs restored from its checkpoint: Optuna gets each epoch's value in order.
        earlier = json.loads(result.get(HISTORY_KEY) or "[]")
        for row in [*earlier, {**result, "epoch": result.get(EPOCH_KEY)}]:
            self._report_step(trial_id, row.get(self.metric), row.get("epoch"))

    def _report_step(self, trial_id: str, value, step) -> None:
        if not _finite(value) or not isinstance(step, int) or step < 1:
            return
        # A trial retried from a checkpoint may report an epoch again; Optuna keeps the first.
        reported = self._reported_steps.setdefault(trial_id, set())
        if step not in reported:
            self.live_trials[trial_id].report(float(value), step)
            reported.add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told or trial_id not in self.live_trials:
            return
        if self._finished_in_storage(trial_id):
            # Told before the driver restarted; the study already has its outcome.
            self.told.add(trial_id)
            return
        if result and not error:
            # Tune hands the final result (and the one that made ASHA stop the trial) only to
            # on_trial_complete: record it as the last intermediate value first.
            self.on_trial_result(trial_id, result)
        ot_trial = self.live_trials[trial_id]
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
        self.study.tell(ot_trial, values, state=state)
        self.told.add(trial_id)
