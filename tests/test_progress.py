"""paitune's compact progress lines (paitune.search.progress)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from paitune.search.progress import CompactProgress


def _trial(status, epoch=None, acc=None, context="c1", control="none", method="snip"):
    result = {} if epoch is None else {"epoch": epoch, "max_epochs": 4, "val_acc": acc}
    return SimpleNamespace(
        status=status, last_result=result, config={"context": context, "control": control, "method": method}
    )


def test_a_few_lines_whatever_the_number_of_trials():
    trials = [
        _trial("TERMINATED", 4, 0.9),
        _trial("TERMINATED", 1, 0.5),
        _trial("ERROR", 2, 0.3),
        _trial("RUNNING", 2, 0.95, context="c2"),
        _trial("PENDING"),
        _trial("TERMINATED", 4, 0.99, control="shuffle"),
        _trial("TERMINATED", 4, 0.999, method="dense"),
    ]
    trials += [_trial("TERMINATED", 4, 0.1, context=f"x{i}") for i in range(20)]
    out = io.StringIO()
    progress = CompactProgress(total=50, metric="val_acc", mode="max", max_contexts=3, stream=out)
    assert progress.should_report(trials)
    progress.report(trials, done=False)
    assert not progress.should_report(trials) and progress.should_report(trials, done=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("paitune: 25/50 trials done (23 completed, 1 stopped, 1 failed), 1 running, 1 pending")
    # the best unmodified trial per context: controls and the dense reference are not candidates
    assert lines[1] == "  best val_acc so far in c1: 0.9000"
    assert lines[-1] == "  ... and 19 more contexts" and len(lines) == 5


def test_a_resumed_sweep_estimates_what_is_left_from_its_own_trials(monkeypatch):
    # Resumed with 100 of 200 trials done before; 10 more finish in its first 60 s: 90 left at
    # 6 s each is ~9:00, not the 0:36 that counting the 100 earlier trials as this run's gives.
    clock = {"now": 1000.0}
    monkeypatch.setattr("paitune.search.progress.time.monotonic", lambda: clock["now"])
    out = io.StringIO()
    progress = CompactProgress(total=200, metric="val_acc", mode="max", stream=out)
    progress.setup()
    progress.report([_trial("TERMINATED", 4, 0.9)] * 100 + [_trial("PENDING")] * 100, done=False)
    clock["now"] += 60.0
    progress.report([_trial("TERMINATED", 4, 0.9)] * 110 + [_trial("PENDING")] * 90, done=False)
    first, later = [line for line in out.getvalue().splitlines() if line.startswith("paitune:")]
    assert first.startswith("paitune: 100/200 trials done") and first.endswith("0:00 elapsed")
    assert later.endswith("1:00 elapsed, ~9:00 left"), later
