"""The sweep's progress on the console: a few lines, whatever the sweep's size.

Tune's own table lists every trial (a row each: thousands on a cluster). ``CompactProgress`` prints,
every ``every_s`` seconds and at the end: trials done (completed / stopped by ASHA) out of the
sweep's total, running, pending and failed, the elapsed time and an estimate of what is left, and
the best unmodified trial so far in each context (the first ``max_contexts``). ``paitune sweep
--verbose`` shows Tune's table instead.
"""

from __future__ import annotations

import sys
import time

from ray.tune import ProgressReporter

from paitune.results.rows import EPOCH_KEY, MAX_EPOCHS_KEY
from paitune.spaces.compile import CONTROL, NO_CONTROL
from paitune.spaces.context import CONTEXT_COLUMN


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class CompactProgress(ProgressReporter):
    def __init__(
        self, *, total: int, metric: str, mode: str, every_s: float = 15.0, max_contexts: int = 8, stream=None
    ):
        self.total, self.metric, self.mode = total, metric, mode
        self.every_s, self.max_contexts = every_s, max_contexts
        self.stream = stream  # None: sys.stdout when printing (Tune pickles the reporter; a stream would not pickle)
        self._start = time.monotonic()
        self._last = -float("inf")
        self._finished_before: int | None = None

    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs):
        self._start = time.monotonic()
        self._finished_before = None

    def should_report(self, trials, done: bool = False) -> bool:
        return done or time.monotonic() - self._last >= self.every_s

    def summary(self, trials) -> list[str]:
        counts = dict.fromkeys(("completed", "stopped", "running", "pending", "failed"), 0)
        best: dict[str, float] = {}
        sign = 1.0 if self.mode == "max" else -1.0
        for trial in trials:
            result = trial.last_result or {}
            status = str(trial.status)
            if status == "ERROR":
                counts["failed"] += 1
            elif status == "TERMINATED":
                full = result.get(EPOCH_KEY, 0) >= result.get(MAX_EPOCHS_KEY, float("inf"))
                counts["completed" if full else "stopped"] += 1
            elif status in ("RUNNING", "PAUSED"):
                counts["running"] += 1
            else:
                counts["pending"] += 1
            config = trial.config or {}
            value = result.get(self.metric)
            if config.get(CONTROL, NO_CONTROL) == NO_CONTROL and config.get("method") != "dense" and value is not None:
                context = str(config.get(CONTEXT_COLUMN, ""))
                if context not in best or sign * value > sign * best[context]:
                    best[context] = value
        finished = counts["completed"] + counts["stopped"] + counts["failed"]
        elapsed = time.monotonic() - self._start
        # A resumed sweep starts with trials finished before it: the rate counts this run's only.
        if self._finished_before is None:
            self._finished_before = finished
        finished_here = finished - self._finished_before
        eta = elapsed / finished_here * max(0, self.total - finished) if finished_here > 0 else None
        lines = [
            f"paitune: {finished}/{self.total} trials done ({counts['completed']} completed, {counts['stopped']} stopped, "
            f"{counts['failed']} failed), {counts['running']} running, {counts['pending']} pending; "
            f"{_duration(elapsed)} elapsed" + (f", ~{_duration(eta)} left" if eta is not None else "")
        ]
        shown = sorted(best.items())[: self.max_contexts]
        lines += [f"  best {self.metric} so far in {context}: {value:.4f}" for context, value in shown]
        if len(best) > len(shown):
            lines.append(f"  ... and {len(best) - len(shown)} more contexts")
        return lines

    def report(self, trials, done: bool, *sys_info: str) -> None:
        self._last = time.monotonic()
        print("\n".join(self.summary(trials)), file=self.stream or sys.stdout, flush=True)
