"""A failed trial keeps its reason: one line in the error column, the whole trace beside the tables,
failures grouped by message in the end-of-sweep summary."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from paitune.search.sink import NO_TRACE, trial_error
from paitune.search.summary import summary_text


def _failed_trial(tmp_path, text, stored=None):
    plain = tmp_path / "error.txt"
    if text is not None:
        plain.write_text(text)
    return SimpleNamespace(error_file=str(plain) if text is not None else None, get_error=lambda: stored)


def test_the_error_line_is_the_raised_exception_type_and_message(tmp_path):
    # What Tune writes into the trial's local folder when the trial function raises.
    trace = (
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\nray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
        '  File "trainable.py", line 3, in run_trial\n    raise ValueError(...)\n'
        "ValueError: allocation 'erk' needs a prunable layer\n"
    )
    line, full = trial_error(_failed_trial(tmp_path, trace))
    assert line == "ValueError: allocation 'erk' needs a prunable layer"
    assert full == trace  # the whole trace, for errors/<trial_id>.txt


def test_without_the_local_file_the_stored_trace_is_read(tmp_path):
    line, full = trial_error(_failed_trial(tmp_path, None, "Traceback ...\nRuntimeError: CUDA out of memory\n"))
    assert line == "RuntimeError: CUDA out of memory" and "Traceback" in full
    assert trial_error(_failed_trial(tmp_path, None, None))[0] == NO_TRACE
    assert trial_error(SimpleNamespace(get_error=lambda: "KeyError: 'x'"))[0] == "KeyError: 'x'"


def test_the_sink_writes_the_trace_beside_the_tables_and_the_summary_groups_failures(tmp_path):
    from paitune.results.rows import TrialRecord, trials_schema
    from paitune.search.sink import ERRORS_DIR, ParquetSink

    sink = ParquetSink(tmp_path, "x", trials_schema([], []), [])
    config = {"method": "snip", "sparsity": 0.9, "seed": 0}
    for tid in ("a", "b"):
        sink.write(TrialRecord(tid, dict(config)), "failed", "ValueError: bad", f"trace of {tid}")
    sink.write(TrialRecord("c", dict(config)), "failed", "KeyError: 'x'", "trace of c")
    assert (tmp_path / ERRORS_DIR / "a.txt").read_text() == "trace of a"
    trials = pd.read_parquet(tmp_path / "trials")
    assert sorted(trials["error"]) == ["KeyError: 'x'", "ValueError: bad", "ValueError: bad"]
    text = summary_text(trials, tmp_path)
    assert "  2 x ValueError: bad" in text and "  1 x KeyError: 'x'" in text
    assert not list(tmp_path.rglob(".tmp-*"))


def test_the_sweep_summary_ranks_configs_not_control_arms(tmp_path):
    """A control arm is a sanity check, not a config to pick, and one that ran past its stopped
    partner has epochs its config was not given: the summary's top list leaves arms out."""
    trials = pd.DataFrame(
        {
            "trial_id": ["p", "s", "q"],
            "status": ["stopped", "completed", "completed"],
            "method": "snip",
            "sparsity": 0.9,
            "allocation": "erk",
            "control": ["none", "shuffle", "none"],
            "seed": 0,
            "epochs_run": [2, 8, 8],
            "val_acc": [0.5, 0.99, 0.9],
            "test_acc": [0.5, 0.98, 0.9],
            "density_achieved": 0.1,
            "error": None,
        }  # fmt: skip
    )
    text = summary_text(trials, tmp_path)
    table = text.split("top 2 by val_acc (control arms left out):\n", 1)[1]
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["q", "p"]
