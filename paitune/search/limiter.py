"""Tune's ``ConcurrencyLimiter``, made safe to restore with ``--resume``.

The limiter hands out at most ``max_concurrent`` trials and forwards a trial's completion to the
searcher only for trials in its ``live_trials``. That set is saved into Tune's experiment snapshot
with the searcher, and the snapshot's copy can be older than the trial table it is restored
with: it may name a trial that had already ended (it never ends again, so the limiter holds its
slot for good — with ``max_concurrent`` 1 the sweep would wait forever) and miss one that Tune
restores as running (its end would never reach the searcher: its Optuna trial would stay
RUNNING, then be failed as an orphan). So a restored limiter starts from an empty set, and the
end of a trial it does not know is passed on (the searcher ignores ids that are not its own).

The trials Tune restores to run again hold slots: Tune never shows the limiter its restored list,
but the scheduler sees every trial Tune adds and records it in the ``TuneTrialIds`` registry the
two share (pickled together in Tune's tuner file). Tune adds the restored trials before the run
loop starts, so at its first call the limiter takes each unfinished one as live; a trial that
reports or ends without being known (no registry) takes or frees a slot the same way.
"""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter

from paitune.search.tune_trials import TuneTrialIds


class ResumableLimiter(ConcurrencyLimiter):
    def __init__(self, searcher, max_concurrent: int, tune_trials: TuneTrialIds | None = None):
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.tune_trials = tune_trials
        self.restored_taken = False  # the restored trials taken as live (once, at the first call)

    def get_state(self) -> dict:
        # The registry is shared with the scheduler through the tuner file, not saved here.
        shared, self.tune_trials = self.tune_trials, None
        try:
            state = super().get_state()
        finally:
            self.tune_trials = shared
        del state["tune_trials"]
        return state

    def set_state(self, state: dict) -> None:
        shared = self.tune_trials
        super().set_state(state)
        self.tune_trials = shared
        self.live_trials = set()
        self.num_unfinished_live_trials = 0
        self.cached_results = {}
        self.restored_taken = False

    def _counts(self) -> bool:
        return self._limit_concurrency and not self.batch

    def _hold(self, trial_id: str) -> None:
        self.live_trials.add(trial_id)
        self.num_unfinished_live_trials += 1

    def _take_restored(self) -> None:
        if self.restored_taken:
            return
        self.restored_taken = True
        if self._counts() and self.tune_trials is not None:
            for trial_id in sorted(self.tune_trials.unfinished - self.live_trials):
                self._hold(trial_id)

    def suggest(self, trial_id: str):
        self._take_restored()
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._take_restored()
        if self._counts() and trial_id not in self.live_trials:
            # Restored without a registry to tell: it runs, so it holds a slot.
            self._hold(trial_id)
        return super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self._take_restored()
        if self._counts() and trial_id not in self.live_trials:
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        return super().on_trial_complete(trial_id, result=result, error=error)
