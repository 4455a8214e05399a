"""The user attrs paitune writes into a context's Optuna study and its trials.

They are what the study records besides Optuna's own state: which Tune trial an Optuna trial ran
as (the join with Tune and with the Parquet tables), how the trial really ended, and why a trial
was queued, repeated or retried. The searcher (``paitune.search.searcher``), its repeat handling
(``paitune.search.repeats``) and the restart recovery (``paitune.search.recovery``) all read and
write them, so they are named once, here.
"""

from __future__ import annotations

TUNE_TRIAL_ATTR = "tune_trial_id"  # the Tune trial id, to join the study with the tables
STATUS_ATTR = "pai_status"  # completed | stopped | failed | diverged
REPLICATE_ATTR = "replicate_of"  # of an enqueued replicate: the Optuna number it repeats
GRID_ATTR = "grid_point"  # of an enqueued grid point
DUPLICATE_ATTR = "duplicate_of"  # of a sampled config that had been asked for already
FILL_ATTR = "untried_fill"  # an untried point picked after MAX_REDRAWS repeats in a row
ORPHAN_ATTR = "orphaned"  # asked by a driver that died before Tune recorded the trial
RETRY_ATTR = "retry_of"  # of an enqueued retry: the Optuna number of the trial it replaces
NOT_RUN_ATTR = "not_run"  # queued (a seed replicate or a retry) but the sweep ended first
DENSE_ATTR = "dense_references"  # of the study itself: Tune trial id -> index of the dense reference it runs
QUEUE_ATTRS = (REPLICATE_ATTR, GRID_ATTR, RETRY_ATTR, FILL_ATTR)  # a trial with one was taken from the queue
