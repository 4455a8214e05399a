"""Keep Tune's per-trial state small: every experiment snapshot lists every trial of the sweep.

For each trial Tune keeps its last result and, for every numeric key the trial ever reported,
running statistics (min, max, mean, the last 5 and the last 10 values), and writes all of it, as
indented JSON, for every trial at each experiment snapshot. A trial's first report carries its
prune-time facts (layers, proxies, FLOPs, mask hash, versions); once paitune's sink, searcher and
scheduler have read a result, Tune would only carry those to every later snapshot, and no part of
paitune reads Tune's statistics (the Parquet tables are the record). ``LeanTrialState``, the last
of the sweep's callbacks, therefore

- strips a result down to the keys every report carries (``REPORT_KEYS``) and Tune's own keys
  before Tune stores it as the trial's last result (Tune lets a callback edit the result in
  place; the scheduler and the searcher were handed their own copy before the callbacks run), and
- forgets the statistics of a trial that ended.

An ended trial then takes less than half the room in each snapshot (``docs/benchmarks.md``).
"""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS, DONE, SHOULD_CHECKPOINT

from paitune.results.rows import REPORT_KEYS
from paitune.search.internals import forget_metric_statistics

# Tune's own result keys (its bookkeeping: iterations, times, where the trial ran, done, and the
# config, which Tune's ``Result.config`` reads from the last result).
TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | frozenset(DEBUG_METRICS) | {DONE, SHOULD_CHECKPOINT, "experiment_tag"}
KEPT_KEYS = REPORT_KEYS | TUNE_KEYS


def strip_result(result: dict) -> None:
    """Drop, in place, every key of a trial's result that is neither a per-report key nor Tune's."""
    for key in [k for k in result if k not in KEPT_KEYS]:
        del result[key]


class LeanTrialState(Callback):
    """Must come after every callback that reads a result's facts (the Parquet sink, loggers)."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        strip_result(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        forget_metric_statistics(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        forget_metric_statistics(trial)
