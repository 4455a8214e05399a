"""The sweep's searcher: one Optuna study per context, contexts covered by design, control arms
paired with the trials they control, dense references beside them.

A PaI question is asked within a context (``paitune.spaces.context``), so the searcher never lets a
sampler compare contexts:

- **A study per context.** Each context of the space has its own Optuna study (named
  ``NAME@<context id>`` in the sweep's journal) and its own sampler, which sees only that context's
  trials and searches only the choices (``CompiledSpace.for_context``). A sampler therefore cannot
  win its objective by moving to an easier context ("lower sparsity trains better" is never
  learned), each sampler's history is the size of one context (what keeps the driver's cost per
  trial flat as a sweep grows), and everything ``PaiOptunaSearch`` does per study (honest
  PRUNED/FAIL states, seed replicates, told repeats, restart reconciliation) holds per context.
- **Balanced coverage.** Each new trial goes to the context that has had the fewest trials so far
  (ties: the order the space lists the values), queued trials (seed replicates, retries, grid
  points) first; so every context gets a trial before any gets a second, a sweep cut short still
  covers them all, and no context gets less than its share.
- **Control arms.** A control (shuffle, reinit, invert, corrupt_*) is never sampled: every sampled
  trial (control none) is followed by one trial per control of the space, the same config and seed
  with only the control changed, so each control-vs-none delta is a paired difference; ASHA keeps
  the pair at a common epoch (``paitune.search.asha``). Methods that choose their own mask (IMP,
  edge-popup) and the dense reference get no arms.
- **Dense references** (one unpruned trial per dataset x model x budget x seed) run first.

Arms and dense references are *side trials*: never Optuna trials (no sampler learns from them), not
counted against ``--num-samples``. Which Tune trial runs which side trial is kept in the user
attrs of the sweep's own study (named ``NAME``), one attr per trial, so a restarted driver runs
again exactly the side trials that neither the restored Tune holds nor the tables have.
"""

from __future__ import annotations

import json

import optuna
from optuna.trial import FixedTrial
from ray.tune.search import Searcher

from paitune.results.layout import written_trial_ids
from paitune.search.asha import pair_key
from paitune.search.searcher import PaiOptunaSearch
from paitune.search.study_attrs import DUPLICATE_ATTR, TUNE_TRIAL_ATTR
from paitune.spaces.compile import CONTROL, NO_CONTROL, CompiledSpace
from paitune.spaces.context import CONTEXT_COLUMN

SIDE_PREFIX = "side:"  # user attr of the sweep's study: "side:<tune trial id>" -> side trial key


def context_study_name(name: str, context: str) -> str:
    return f"{name}@{context}"


def control_free_methods() -> frozenset[str]:
    from paitune.sparse.config import CONTROL_FREE_METHODS

    return frozenset(CONTROL_FREE_METHODS) | {"dense"}


class ContextSearch(Searcher):
    """Ray Tune searcher over a compiled space: per-context ``PaiOptunaSearch`` studies plus side trials."""

    def __init__(
        self, compiled: CompiledSpace, *, metric, mode, sampler_factory, storage, study_name: str,
        grid: bool = False, dense: list[dict] | None = None, budget: int | None = None, results=None,
        tune_trials=None,
    ):  # fmt: skip
        """``sampler_factory(index, held)``: a fresh sampler for the index-th context (each study
        needs its own), whose study holds ``held`` trials (a resume); ``budget``: sampled trials to
        run (side trials come on top)."""
        super().__init__(
            metric=metric if isinstance(metric, str) else None, mode=mode if isinstance(mode, str) else None
        )
        self._metric_spec, self._mode_spec = metric, mode
        self._compiled = compiled
        self._name = study_name
        self._budget = budget
        self._results = results
        self._tune_trials = tune_trials
        self._arms = compiled.control_arms
        self._control_free = control_free_methods()
        self._storage = storage
        self._study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True)
        self._children: dict[str, PaiOptunaSearch] = {}
        for index, (context, cid) in enumerate(zip(compiled.contexts(), compiled.context_ids())):
            sub = compiled.for_context(context)
            name = context_study_name(study_name, cid)
            self._children[cid] = PaiOptunaSearch(
                sub, metric=metric, mode=mode, sampler=sampler_factory(index, _trials_held(storage, name)),
                storage=storage, study_name=name, grid=grid, results=results, tune_trials=tune_trials,
            )  # fmt: skip
        self._dense = [{**config, CONTEXT_COLUMN: compiled.context_of(config)} for config in (dense or [])]
        self._side: dict[str, dict] = {}  # side key -> config, in the order they are owed
        self._side_issued: dict[str, str] = {}  # Tune trial id -> side key
        self._side_pending: dict[str, None] = {}  # side keys owed and not issued, in order (an ordered set)
        self._owner: dict[str, str] = {}  # Tune trial id -> context of the study that runs it
        self._issued: dict[str, int] = dict.fromkeys(self._children, 0)  # sampled trials per context
        self._reconciled = False

    @property
    def studies(self) -> dict[str, optuna.Study]:
        """Context id -> its Optuna study."""
        return {cid: child.study for cid, child in self._children.items()}

    def is_side(self, trial_id: str) -> bool:
        return trial_id in self._side_issued

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space and objectives come from the compiled space

    # -- suggestions ---------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        if not self._reconciled:
            self._reconcile()
        if trial_id in self._side_issued:
            return dict(self._side[self._side_issued[trial_id]])
        if trial_id in self._owner:
            return self._with_context(self._children[self._owner[trial_id]].suggest(trial_id), self._owner[trial_id])
        if self._side_pending:
            key = next(iter(self._side_pending))
            del self._side_pending[key]
            self._side_issued[trial_id] = key
            self._study.set_user_attr(SIDE_PREFIX + trial_id, key)
            return dict(self._side[key])
        if self._budget is not None and sum(self._issued.values()) >= self._budget:
            return Searcher.FINISHED
        cid = self._next_context()
        if cid is None:
            return Searcher.FINISHED  # every config of every context ran: more would repeat them
        config = self._children[cid].suggest(trial_id)
        if not isinstance(config, dict):
            return config
        self._owner[trial_id] = cid
        self._issued[cid] += 1
        self._queue_arms(config)
        return self._with_context(config, cid)

    @staticmethod
    def _with_context(config, cid: str):
        return {**config, CONTEXT_COLUMN: cid} if isinstance(config, dict) else config

    def _next_context(self) -> str | None:
        """The context the next sampled trial goes to: one with queued trials if any (replicates
        run beside their draw), else one with configs left to try; the fewest trials so far
        first, then the space's order. None when every context of a finite space is exhausted."""
        order = list(self._children)
        waiting = [cid for cid in order if self._children[cid].waiting()]
        candidates = waiting or [cid for cid in order if not self._children[cid].exhausted()]
        if not candidates:
            return None
        return min(candidates, key=self._issued.__getitem__)  # min keeps the first of equals: space order

    def _queue_arms(self, config: dict) -> None:
        if config.get(CONTROL, NO_CONTROL) != NO_CONTROL or config.get("method") in self._control_free:
            return
        pair = pair_key(config)
        cid = self._compiled.context_of(config)
        for arm in self._arms:
            self._owe(f"arm:{pair}:{arm}", {**config, CONTROL: arm, CONTEXT_COLUMN: cid})

    def _owe(self, key: str, config: dict) -> None:
        """A side trial this sweep owes (once: a key owed again is not queued twice)."""
        if key not in self._side:
            self._side[key] = config
            self._side_pending[key] = None

    # -- restart -------------------------------------------------------------------------------
    def _reconcile(self) -> None:
        """Square every context's study with the restored Tune (``PaiOptunaSearch._reconcile``),
        then the side trials: one issued to a Tune trial that Tune neither holds nor has written
        is owed again, and every sampled trial that ran or runs owes its arms."""
        self._reconciled = True
        held = self._tune_trials.ids if self._tune_trials is not None else set()
        written = written_trial_ids(self._results) if self._results is not None else set()
        for cid, child in self._children.items():
            child._reconcile()
            self._issued[cid] = child._issued
            for tid in child.live_trials:
                self._owner[tid] = cid
        for i, config in enumerate(self._dense):
            self._owe(f"dense:{i}", config)
        for child in self._children.values():
            for frozen in child.study.get_trials(deepcopy=False):
                # Every config named to Tune owes its arms: one held or written ran or runs, and
                # one neither held nor written (orphaned) has its config queued again (a retry)
                # by child._reconcile above. Its arms must be known here even before the retry
                # runs: an arm of it that Tune holds or that finished and was written is kept
                # below only if its key is owed, and would otherwise run a second time.
                tid = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
                if tid is None or DUPLICATE_ATTR in frozen.user_attrs:
                    continue
                self._queue_arms(child._compiled.define_by_run(FixedTrial(frozen.params)))
        issued = {
            key[len(SIDE_PREFIX):]: value for key, value in self._study.user_attrs.items() if key.startswith(SIDE_PREFIX)
        }  # fmt: skip
        self._side_issued = {
            tid: key for tid, key in issued.items() if key in self._side and (tid in held or tid in written)
        }
        for key in self._side_issued.values():
            self._side_pending.pop(key, None)

    # -- results -------------------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._reconciled:  # a restored trial may report before the first suggestion
            self._reconcile()
        cid = self._owner.get(trial_id)
        if cid is not None:
            self._children[cid].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._reconciled:
            self._reconcile()
        cid = self._owner.get(trial_id)
        if cid is not None:
            self._children[cid].on_trial_complete(trial_id, result=result, error=error)

    # Tune saves the searcher into its snapshot and restores it on --resume; the studies are in
    # Optuna's storage, the snapshot keeps each child's small state as JSON.
    def save(self, checkpoint_path: str) -> None:
        state = {"children": {cid: child.get_state() for cid, child in self._children.items()}}
        with open(checkpoint_path, "w") as handle:
            json.dump(state, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        for cid, child in self._children.items():
            child.set_state(state["children"].get(cid, {"completed": [], "reported": {}}))
        self._owner = {}
        self._reconciled = False


def load_context_studies(storage, name: str) -> dict[str, optuna.Study]:
    """Context id -> study of a sweep named ``name``, read back from its storage."""
    prefix = context_study_name(name, "")
    return {
        summary.study_name[len(prefix):]: optuna.load_study(study_name=summary.study_name, storage=storage)
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if summary.study_name.startswith(prefix)
    }  # fmt: skip


def study_trials(storage, name: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial of every context study of the sweep ``name``."""
    return [t for study in load_context_studies(storage, name).values() for t in study.get_trials(deepcopy=False)]


def _trials_held(storage, study_name: str) -> int:
    """How many trials the study ``study_name`` holds in ``storage`` (0 where it does not exist yet)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))
