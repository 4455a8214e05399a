"""Schedulers whose decisions survive a driver restart.

Ray restores a resumed Tuner's scheduler from the copy pickled when the Tuner was built, before
any result arrived: stock ASHA's rungs come back empty, the first trial to reach a rung is
compared with nobody, and the sweep's early stopping depends on when the driver died.
``PersistentASHA`` writes its rungs (per bracket: milestone -> trial id -> recorded score) and its
stop decisions to a small JSON file after every change, atomically, and loads them the first time
it is used in a new process. A trial that re-runs epochs from its checkpoint after the restart is
stopped again where it was stopped before, so its outcome — and what Optuna was told about it —
does not change.

Both schedulers record the id of every trial Tune adds (``TuneTrialIds``): after a restart, the
searcher squares the study with the trials the restored Tune holds (see ``paitune.search.searcher``).
Tune itself snapshots on its own schedule, which keeps the snapshot's cost a small fraction of the
sweep: a snapshot lists every trial (~30 KB each), so one forced per trial made a sweep O(N^2).

The dense reference trials (method ``dense``) are left out of the rungs and never stopped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from paitune.search.tune_trials import TuneTrialIds

STATE_FILE = "asha.json"


def _encode(value: float | None):
    # JSON has no NaN/inf; a diverged trial's score may be one.
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))


def _decode(value):
    return float(value) if isinstance(value, str) else value


def _is_dense_reference(trial) -> bool:
    # The unpruned reference runs its whole budget and is never compared on a rung: it would
    # raise every cutoff and change which pruned trials are stopped.
    return (getattr(trial, "config", None) or {}).get("method") == "dense"


class PaiFIFO(FIFOScheduler):
    def __init__(self, *, tune_trials: TuneTrialIds | None = None):
        super().__init__()
        self.tune_trials = tune_trials

    def on_trial_add(self, tune_controller, trial):
        if self.tune_trials is not None:
            self.tune_trials.add(trial.trial_id)
        super().on_trial_add(tune_controller, trial)

    def decision_epochs(self) -> tuple[int, ...]:
        """The epochs at which this scheduler can stop a trial: none (FIFO never does)."""
        return ()


class PersistentASHA(AsyncHyperBandScheduler):
    """``AsyncHyperBandScheduler`` + rung records and stop decisions in ``state_path`` (JSON)."""

    def __init__(self, *args, state_path: str | Path, tune_trials: TuneTrialIds | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.state_path = str(state_path)
        self.tune_trials = tune_trials
        self._stopped_at: dict[str, float] = {}  # trial id -> time_attr value ASHA stopped it at
        self._loaded = False

    def decision_epochs(self) -> tuple[int, ...]:
        """The epochs at which ASHA can stop a trial: its rung milestones over all brackets, as
        Tune's own ASHA computed them. A trial must report these; between them ASHA only waits."""
        return tuple(sorted({int(milestone) for b in self._brackets for milestone, _ in b._rungs}))

    # -- persistence ---------------------------------------------------------------------------
    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        """Per bracket, the rungs as (milestone, {trial_id: recorded score}), highest first."""
        return [[(milestone, dict(recorded)) for milestone, recorded in b._rungs] for b in self._brackets]

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            state = json.loads(Path(self.state_path).read_text())
        except FileNotFoundError:
            return
        for bracket, saved in zip(self._brackets, state["brackets"]):
            by_milestone = {float(m): rec for m, rec in saved}
            bracket._rungs = [
                (milestone, {tid: _decode(v) for tid, v in by_milestone.get(float(milestone), {}).items()})
                for milestone, _ in bracket._rungs
            ]
        self._stopped_at = {tid: float(t) for tid, t in state.get("stopped_at", {}).items()}
        self._num_stopped = int(state.get("num_stopped", 0))

    def _save(self) -> None:
        state = {
            "brackets": [
                [[milestone, {tid: _encode(v) for tid, v in recorded.items()}] for milestone, recorded in b._rungs]
                for b in self._brackets
            ],
            "stopped_at": self._stopped_at,
            "num_stopped": self._num_stopped,
        }
        path = Path(self.state_path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def __getstate__(self):
        # Tune pickles the scheduler inside its Tuner file; a copy must reload the JSON when used.
        state = dict(self.__dict__)
        state["_loaded"] = False
        return state

    # -- Tune's scheduler hooks ----------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial):
        self._ensure_loaded()
        if self.tune_trials is not None:
            self.tune_trials.add(trial.trial_id)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        self._ensure_loaded()
        if _is_dense_reference(trial):
            return TrialScheduler.CONTINUE
        self._trial_info.setdefault(trial.trial_id, self._brackets[0])
        now = result.get(self._time_attr)
        before = self._stopped_at.get(trial.trial_id)
        if before is not None and now is not None and now >= before:
            # Re-running from a checkpoint after a restart: the decision was made already.
            return TrialScheduler.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and now is not None:
            self._stopped_at[trial.trial_id] = float(now)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        self._ensure_loaded()
        if _is_dense_reference(trial):
            self._trial_info.pop(trial.trial_id, None)
            return
        self._trial_info.setdefault(trial.trial_id, self._brackets[0])
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def on_trial_remove(self, tune_controller, trial):
        self._trial_info.pop(trial.trial_id, None)
