"""Schedulers: ASHA within each context, control arms that follow their partner, state that
survives a driver restart.

``ContextASHA`` is asynchronous successive halving (Li et al. 2020, one bracket, as Ray's
``AsyncHyperBandScheduler`` runs it: rungs at ``grace_period * reduction_factor**k`` epochs; at a
rung a trial is stopped when its score is below the ``1 - 1/reduction_factor`` quantile of the
scores recorded there before it) with two changes that make its decisions mean something in a
PaI sweep:

- **Rungs per context.** A trial is compared only with trials of its own context (the ``context``
  id the searcher puts in every config: same dataset, model, sparsity and budget), so a trial at
  compression 32 is never stopped for being behind trials at compression 2. A context with fewer
  than ``min_rung_trials`` recorded trials at a rung stops nobody there.
- **Paired controls.** A control trial (control other than none) is the paired arm of the
  unmodified trial with the same config and seed; it is never ranked and never stopped before its
  partner, so every arm reaches the epoch its partner ends at and each control-vs-none delta is
  measured there. An arm stops at its first report at or after the epoch its partner was stopped
  at. Arms train beside their partner and may be ahead of it: the partner's decision does not
  look at them (were it kept running because an arm had passed the rung, ASHA's stops would
  depend on which of the two trials the cluster ran first), so an arm ahead of its stopped partner
  trains on to its next report, epochs the pair's delta does not use.

A rung holds one record per config and seed (its pair key), not per Tune trial: the retry of a
trial lost with a driver (a new Tune trial of the same config) is not counted at a rung its first
run passed, so a resumed sweep decides every later rung as the uninterrupted sweep would.

Ray restores a resumed Tuner's scheduler from the copy pickled when the Tuner was built, before
any result arrived; this one writes its rungs and decisions to a small JSON file after every
change, atomically, and loads them the first time it is used in a new process. A trial that
re-runs epochs from its checkpoint after a restart is stopped again where it was stopped before,
so its outcome (and what Optuna was told about it) does not change.

Both schedulers record the id of every trial Tune adds (``TuneTrialIds``): after a restart the
searcher squares its studies with the trials the restored Tune holds (``paitune.search.recovery``).
The dense reference trials (method ``dense``) are never ranked or stopped.

Longer than the other modules: the ASHA rule, the pairing of control arms and the journaled state
meet in each decision (a stop writes the pair's record), so they stay together.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from paitune.config import config_hash, trial_config
from paitune.results.rows import STATUS_KEY
from paitune.search.journal_state import LOG_SUFFIX, JournaledState
from paitune.search.tune_trials import TuneTrialIds
from paitune.spaces.compile import CONTROL, NO_CONTROL
from paitune.spaces.context import CONTEXT_COLUMN, context_id

STATE_FILE = "asha.json"
STATE_FILES = (STATE_FILE, STATE_FILE + LOG_SUFFIX)  # the snapshot and its journal


def _encode(value: float | None):
    # JSON has no NaN/inf; a diverged trial's score may be one.
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))


def _decode(value):
    return float(value) if isinstance(value, str) else value


def _config(trial) -> dict:
    return getattr(trial, "config", None) or {}


def _is_dense_reference(trial) -> bool:
    # The unpruned reference runs its whole budget and is never compared on a rung: it would
    # raise every cutoff and change which pruned trials are stopped.
    return _config(trial).get("method") == "dense"


def trial_context(config: dict) -> str:
    """The context id the searcher put in a Tune config (derived with the default keys if absent)."""
    return config.get(CONTEXT_COLUMN) or context_id(trial_config(config))


def pair_key(config: dict) -> str:
    """What an unmodified trial and its control arms share: the hash of the config with control none."""
    return config_hash(trial_config({**config, CONTROL: NO_CONTROL}))


def read_state(path) -> dict:
    """ContextASHA's state as of its last change (snapshot plus journal), as one dict: ``rungs``
    (context -> milestone -> pair key -> score), ``stopped_at``, ``pair_stopped``."""
    reader = ContextASHA(metric="_", mode="max", max_t=2, grace_period=1, reduction_factor=2, state_path=path)
    reader._ensure_loaded()
    return reader._snapshot()[0]


class LiveTrials:
    """The trials Tune may still start, in the order Tune added them: what
    ``choose_trial_to_run`` scans. Tune's FIFO scans every trial of the experiment at each call,
    O(N) per trial started and O(N^2) per sweep (the driver's largest cost past a few thousand
    trials); finished trials leave this list, so a scan costs the running and waiting ones."""

    FINAL = ("TERMINATED", "ERROR")

    def __init__(self):
        self._trials: dict[str, object] = {}

    def __getstate__(self):
        return {"_trials": {}}  # Tune re-adds every trial it restores (on_trial_add)

    def add(self, trial) -> None:
        self._trials[trial.trial_id] = trial

    def choose(self):
        paused = None
        for tid, trial in list(self._trials.items()):
            status = str(trial.status)
            if status in self.FINAL:
                del self._trials[tid]
            elif status == "PENDING":
                return trial
            elif status == "PAUSED" and paused is None:
                paused = trial
        return paused


class PaiFIFO(FIFOScheduler):
    def __init__(self, *, tune_trials: TuneTrialIds | None = None):
        super().__init__()
        self.tune_trials = tune_trials
        self.live = LiveTrials()

    def on_trial_add(self, tune_controller, trial):
        if self.tune_trials is not None:
            self.tune_trials.add(trial.trial_id, unfinished=str(trial.status) not in LiveTrials.FINAL)
        self.live.add(trial)
        super().on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        return self.live.choose()

    def decision_epochs(self) -> tuple[int, ...]:
        """The epochs at which this scheduler can stop a trial: none (FIFO never does)."""
        return ()


class ContextASHA(FIFOScheduler):
    """ASHA with rungs per context, control arms paired with their partner, and its state in
    ``state_path`` (JSON)."""

    def __init__(
        self, *, time_attr: str = "epoch", metric: str, mode: str, max_t: int, grace_period: int = 1,
        reduction_factor: float = 2.0, min_rung_trials: int | None = None, state_path: str | Path,
        tune_trials: TuneTrialIds | None = None,
    ):  # fmt: skip
        super().__init__()
        if not (max_t >= grace_period >= 1 and reduction_factor > 1 and mode in ("max", "min")):
            raise ValueError("ContextASHA needs max_t >= grace_period >= 1, reduction_factor > 1 and mode max|min")
        self.time_attr, self._metric, self._mode = time_attr, metric, mode
        self.max_t, self.reduction_factor = int(max_t), float(reduction_factor)
        # Below this many earlier records at a rung, a context cannot tell good from bad yet.
        self.min_rung_trials = int(min_rung_trials or math.ceil(reduction_factor))
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1 + 1e-9)
        self.milestones = tuple(
            m for m in sorted({int(round(grace_period * reduction_factor**k)) for k in range(count)}) if m < max_t
        )
        self.state_path = str(state_path)
        self.tune_trials = tune_trials
        self._rungs: dict[str, dict[int, dict[str, float]]] = {}  # context -> milestone -> pair key -> score
        self._stopped_at: dict[str, float] = {}  # trial id -> epoch ASHA stopped it at
        self._pair_stopped: dict[str, float] = {}  # pair key -> epoch its unmodified trial was stopped at
        self._journal = JournaledState(self.state_path)
        self._loaded = False
        self.live = LiveTrials()
        self._pairs: dict[str, str] = {}  # trial id -> pair_key of its config (hashed once, not per result)

    def _pair(self, trial) -> str:
        pair = self._pairs.get(trial.trial_id)
        if pair is None:
            pair = self._pairs[trial.trial_id] = pair_key(_config(trial))
        return pair

    def decision_epochs(self) -> tuple[int, ...]:
        """The epochs at which a trial can be stopped: the rung milestones. A trial must report
        these; between them ASHA only waits."""
        return self.milestones

    # -- persistence ---------------------------------------------------------------------------
    def rungs(self) -> dict[str, list[tuple[int, dict[str, float]]]]:
        """Per context, the rungs as (milestone, {pair key: recorded score}), lowest first."""
        self._ensure_loaded()
        return {ctx: [(m, dict(rec)) for m, rec in sorted(rungs.items())] for ctx, rungs in self._rungs.items()}

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        state, events = self._journal.load()
        if state is not None:
            self._rungs = {
                ctx: {int(m): {tid: _decode(v) for tid, v in rec.items()} for m, rec in rungs.items()}
                for ctx, rungs in state["rungs"].items()
            }
            self._stopped_at = {tid: float(t) for tid, t in state.get("stopped_at", {}).items()}
            self._pair_stopped = {k: float(t) for k, t in state.get("pair_stopped", {}).items()}
        for kind, *args in events:
            self._apply(kind, *args)

    # One journal event per change, each setting one entry (so replaying one twice is harmless).
    def _apply(self, kind: str, *args) -> None:
        if kind == "rung":
            ctx, milestone, tid, score = args
            self._rungs.setdefault(ctx, {}).setdefault(int(milestone), {})[tid] = _decode(score)
        elif kind == "stopped":
            self._stopped_at[args[0]] = float(args[1])
        elif kind == "pair_stopped":
            self._pair_stopped[args[0]] = float(args[1])

    def _record(self, kind: str, *args) -> None:
        self._apply(kind, *args)
        self._journal.append([kind, *args], self._snapshot)

    def _snapshot(self) -> tuple[dict, int]:
        state = {
            "rungs": {
                ctx: {str(m): {tid: _encode(v) for tid, v in rec.items()} for m, rec in rungs.items()}
                for ctx, rungs in self._rungs.items()
            },
            "stopped_at": self._stopped_at,
            "pair_stopped": self._pair_stopped,
        }
        size = sum(len(rec) for rungs in self._rungs.values() for rec in rungs.values())
        return state, size + len(self._stopped_at) + len(self._pair_stopped)

    def __getstate__(self):
        # Tune pickles the scheduler inside its Tuner file; a copy must reload the JSON when used.
        state = dict(self.__dict__)
        state["_loaded"] = False
        return state

    # -- decisions -----------------------------------------------------------------------------
    def _score(self, result: dict) -> float | None:
        value = result.get(self._metric)
        if value is None:
            return None
        value = float(value)
        if not math.isfinite(value):
            return -math.inf  # a diverged trial ranks last
        return value if self._mode == "max" else -value

    def _rank(self, trial, now: int, score: float) -> str:
        """ASHA's rule on the rung ``now`` reached, among the trials of the same context."""
        milestone = max((m for m in self.milestones if m <= now), default=None)
        if milestone is None:
            return TrialScheduler.CONTINUE
        recorded = self._rungs.setdefault(trial_context(_config(trial)), {}).setdefault(milestone, {})
        pair = self._pair(trial)
        if pair in recorded:
            # Decided at this rung already: a report repeated from a checkpoint, or the retry of a
            # trial that passed here before a driver restart (a new Tune trial, the same config).
            return TrialScheduler.CONTINUE
        action = TrialScheduler.CONTINUE
        if len(recorded) >= self.min_rung_trials:
            cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100)
            if score < cutoff:
                action = TrialScheduler.STOP
        self._record("rung", trial_context(_config(trial)), milestone, pair, _encode(score))
        return action

    def on_trial_add(self, tune_controller, trial):
        self._ensure_loaded()
        if self.tune_trials is not None:
            self.tune_trials.add(trial.trial_id, unfinished=str(trial.status) not in LiveTrials.FINAL)
        self.live.add(trial)

    def choose_trial_to_run(self, tune_controller):
        return self.live.choose()

    def on_trial_result(self, tune_controller, trial, result):
        self._ensure_loaded()
        config = _config(trial)
        now = result.get(self.time_attr)
        if _is_dense_reference(trial) or now is None:
            return TrialScheduler.CONTINUE
        before = self._stopped_at.get(trial.trial_id)
        if before is not None and now >= before:
            # Re-running from a checkpoint after a restart: the decision was made already.
            return TrialScheduler.STOP
        pair = self._pair(trial)
        if config.get(CONTROL, NO_CONTROL) != NO_CONTROL:
            action = self._follow_partner(pair, now)
        elif pair in self._pair_stopped and now >= self._pair_stopped[pair]:
            # The same config was stopped here before under another Tune trial: a retry after a
            # restart (its first run neither held by the restored Tune nor written). Its arms
            # already follow that decision, so it stops there too (and adds no second record of
            # the same config to the rung).
            action = TrialScheduler.STOP
        else:
            score = self._score(result)
            if score is None:
                return TrialScheduler.CONTINUE
            action = self._rank(trial, int(now), score)
            if action == TrialScheduler.STOP:
                self._record("pair_stopped", pair, float(now))
        if action == TrialScheduler.STOP:
            self._record("stopped", trial.trial_id, float(now))
        return action

    def _follow_partner(self, pair: str, now: float) -> str:
        stopped = self._pair_stopped.get(pair)
        return TrialScheduler.STOP if stopped is not None and now >= stopped else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self._ensure_loaded()
        if (result or {}).get(STATUS_KEY) in ("diverged", "failed"):
            self._partner_ended(trial, (result or {}).get(self.time_attr))

    def on_trial_error(self, tune_controller, trial):
        self._ensure_loaded()
        self._partner_ended(trial, (getattr(trial, "last_result", None) or {}).get(self.time_attr))

    def _partner_ended(self, trial, epoch) -> None:
        """An unmodified trial that diverged or failed ends its pair there: its arms stop at their
        next report (an arm already past that epoch cannot be called back)."""
        config = _config(trial)
        if _is_dense_reference(trial) or config.get(CONTROL, NO_CONTROL) != NO_CONTROL:
            return
        pair = self._pair(trial)
        if pair not in self._pair_stopped:
            self._record("pair_stopped", pair, float(epoch or 0))

    def on_trial_remove(self, tune_controller, trial):
        pass

    def debug_string(self) -> str:
        return f"ContextASHA: {len(self._rungs)} contexts, {len(self._stopped_at)} stopped"
