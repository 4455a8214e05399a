"""Tune's ``ConcurrencyLimiter``, made safe to restore with ``--resume``.

The limiter hands out at most ``max_concurrent`` trials and forwards a trial's completion to the
searcher only for trials in its ``live_trials``. That set is saved into Tune's experiment snapshot
with the searcher, and the snapshot's copy can be older than the trial table it is restored
with: it may name a trial that had already ended (it never ends again, so the limiter holds its
slot for good — with ``max_concurrent`` 1 the sweep would wait forever) and miss one that Tune
restores as running (its end would never reach the searcher: its Optuna trial would stay
RUNNING, then be failed as an orphan). So a restored limiter starts from an empty set, and the
end of a trial it does not know is passed on (the searcher ignores ids that are not its own).
A trial Tune restores counts against ``max_concurrent`` from its first report on (its end then
frees the slot): the limiter never sees Tune's restored list, so until then new trials may start
beside it, as many as Ray's resources allow.
"""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter


class ResumableLimiter(ConcurrencyLimiter):
    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.live_trials = set()
        self.num_unfinished_live_trials = 0
        self.cached_results = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._limit_concurrency and not self.batch and trial_id not in self.live_trials:
            # A trial restored from before the restart: it runs, so it holds a slot.
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self._limit_concurrency and not self.batch and trial_id not in self.live_trials:
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        return super().on_trial_complete(trial_id, result=result, error=error)
