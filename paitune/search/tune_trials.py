"""The Tune trial ids the running Tune controller holds, shared by the scheduler and the searcher.

After a driver restart the searcher must know which of the trials in the study (the Optuna
journal, always current) the restored Tune will run: Tune's experiment snapshot, what a resume
restores, lags the journal by up to one snapshot interval. Tune tells the scheduler about every
trial it adds — each trial restored from the snapshot, before the first new suggestion — and
tells the searcher nothing, so the scheduler records the ids here and the searcher reads them.
Both objects are pickled together into Tune's tuner file, so a restored pair shares one registry.
The concurrency limiter reads it too: the trials Tune restores unfinished hold slots.
"""

from __future__ import annotations


class TuneTrialIds:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.unfinished: set[str] = set()  # added to run (a restored trial: to run again)

    def add(self, trial_id: str, *, unfinished: bool = True) -> None:
        self.ids.add(trial_id)
        if unfinished:
            self.unfinished.add(trial_id)

    def __getstate__(self) -> dict:
        # The ids describe one live Tune controller: a copy unpickled in a new driver starts empty
        # and is filled by the controller that restores the trials.
        return {"ids": set(), "unfinished": set()}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
