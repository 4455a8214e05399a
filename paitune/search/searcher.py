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
its checkpoint ends a second time). Before its first suggestion a driver squares the study with
the trials the restored Tune holds and those written to the tables (``_reconcile``, with
``paitune.search.recovery``). The sweep's budget (Tune trials, dense references included) is kept
here, not by Tune: Tune's own count restarts from its snapshot, which may miss trials that
finished after it.

Dense references (one unpruned trial per context, ``CompiledSpace.dense_references``) are handed
to Tune first, straight from a queue: they never become Optuna trials, so the sampler neither
spends budget on them nor learns from them.

Each fresh draw is queued again with every other seed, and a sampled repeat of a config is told,
never run, and drawn again (``paitune.search.repeats``).

A little over 300 lines: the whole of Tune's searcher interface (suggest, results, completion,
save and restore) stays in one class rather than reaching into it from other modules.
"""

from __future__ import annotations

import json
import math

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from paitune.results.layout import written_trial_ids
from paitune.results.rows import EPOCH_KEY, HISTORY_KEY, MAX_EPOCHS_KEY, STATUS_KEY
from paitune.search import internals
from paitune.search.recovery import kept_dense_references, retry_lost_trials
from paitune.search.repeats import (
    MAX_REDRAWS,
    AskedConfigs,
    covered_seeds,
    replicate_params,
    runs_once_per_seed,
    tell_duplicate,
)
from paitune.search.study_attrs import (
    DENSE_ATTR,
    FILL_ATTR,
    GRID_ATTR,
    ORPHAN_ATTR,
    QUEUE_ATTRS,
    REPLICATE_ATTR,
    STATUS_ATTR,
    TUNE_TRIAL_ATTR,
)
from paitune.search.tune_trials import TuneTrialIds
from paitune.spaces.compile import SEED_PARAM, CompiledSpace


def trial_outcome(result: dict | None, error: bool) -> str:
    """completed | stopped | failed | diverged, from the last result a trial reported."""
    if error:
        return "failed"
    if not result:
        return "stopped"
    if result.get(STATUS_KEY) in ("diverged", "failed"):  # reported by the trial itself
        return result[STATUS_KEY]
    if result.get(EPOCH_KEY, 0) >= result.get(MAX_EPOCHS_KEY, math.inf):
        return "completed"
    return "stopped"


def _finite(value) -> bool:
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
        self._configs = AskedConfigs(compiled, self.study)
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
                earlier = self._configs.earlier(ot_trial)
                if earlier is None:
                    break
                point = self._configs.untried_point() if redraw == MAX_REDRAWS else None
                if redraw == MAX_REDRAWS and point is None:
                    break  # nothing untried is left: the repeat runs
                tell_duplicate(self.study, ot_trial, earlier)
                del self.live_trials[trial_id]
                if point is not None:
                    self._enqueue(point, {FILL_ATTR: True})
                config = self._ask(trial_id)
                ot_trial = self.live_trials[trial_id]
            self._configs.remember(ot_trial.params, internals.storage_id(ot_trial))
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            self._enqueue_replicates(ot_trial)
        return config

    def exhausted(self) -> bool:
        """Whether a new draw could only repeat a config (``AskedConfigs.exhausted``)."""
        return self._configs.exhausted()

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

    def _enqueue_replicates(self, ot_trial: optuna.Trial, covered=None) -> None:
        """Queue ``ot_trial``'s config with each seed not in ``covered`` (default: its own)."""
        if not runs_once_per_seed(ot_trial.user_attrs, self._seeds, self._grid):
            return
        covered = {ot_trial.params.get(SEED_PARAM)} if covered is None else covered
        for params in replicate_params(ot_trial.params, self._seeds, covered):
            self._enqueue(params, {REPLICATE_ATTR: ot_trial.number})
            self._configs.remember_queued(params)

    # -- restart -------------------------------------------------------------------------------
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
        self._configs.forget()
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
        """Square the study with what this driver's Tune holds, before its first suggestion
        (``paitune.search.recovery``): lost trials queued again, replicates a dead driver never
        queued queued now, dense references neither held nor written owed again. Counts the
        budget used so far."""
        self._orphans_checked = True
        held = self._tune_trials.ids if self._tune_trials is not None else set()
        written = written_trial_ids(self._results) if self._results is not None else set()
        used, lost = retry_lost_trials(self.study, held, written)
        for tid in lost:
            self.live_trials.pop(tid, None)
        for frozen, covered in covered_seeds(self.study.get_trials(deepcopy=False)):
            self._enqueue_replicates(frozen, covered)
        self._dense_issued = kept_dense_references(self.study, held, written)
        self._issued = used + len(self._dense_issued)
        self._configs.forget()
        self._waiting = None

    # -- results -------------------------------------------------------------------------------
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
