"""The driver-side Tune callback that turns trial results into the three Parquet tables.

It collects each trial's results as they arrive and, when the trial ends (finished, stopped by
the scheduler, diverged or failed), writes one file per table for it under ``DIR/NAME/{trials,
epochs,layers}/`` (a local directory or a URI, see ``paitune.results.storage``), named by trial id. The epochs and layers files go first and the trials file
last, so a row in ``trials`` means the trial's other rows are on disk too.

The sink keeps no state of its own across a driver restart (nothing of it is pickled into Tune's
snapshot): a trial restored from its checkpoint re-sends, in its first report, the prune-time
facts and the history of the epochs it ran before, which is all the sink needs to write its
files whole. A file is named by trial id, so writing a trial again replaces it.

In a sweep (``background=True``) the files are written by one writer thread per driver process,
in the order trials end, so the driver's loop can hand the worker its next trial instead of
waiting ~10 ms per trial for three Parquet files. Nothing is lost that a resume would not redo:
``flush_writes()`` runs before each of Tune's experiment snapshots (a trial the snapshot records as
ended has its files on disk, so a resume never holds an ended trial without a row), at the end of
the experiment and when the sweep returns; a trial whose write was still queued when the driver
died is, for the resumed Tune, one that had not ended (it reruns) or one it never knew (the
searcher retries it, see ``paitune.search.recovery``). A failed write is raised at the next one.

Each trial row carries ``dense_test_acc``, the test accuracy of its dense reference (same dataset,
model, budget, seed and shared context values: ``paitune.results.rows.reference_key``), when that reference has finished before the row is
written (the sweep schedules the references first); otherwise it is null and the analysis joins it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from ray.tune import Callback

from paitune.config import trial_config
from paitune.results.layout import TABLES, is_compacted, layout, trial_id_of, written_trial_ids
from paitune.results.rows import (
    ERROR_KEY,
    TrialRecord,
    epoch_rows,
    layer_rows,
    record_context,
    reference_key,
    trial_row,
)
from paitune.results.storage import Location, locate, read_parquet_files
from paitune.search.compaction import clear_compaction_leftovers
from paitune.search.faults import fault_point
from paitune.search.parquet_io import remove_stale_temporaries, write_table_atomic, write_text_atomic
from paitune.search.searcher import trial_outcome

ERRORS_DIR = "errors"  # beside the tables: errors/<trial_id>.txt, a failed trial's full trace
NO_TRACE = "trial failed (no error trace was saved)"


def trial_error(trial) -> tuple[str, str]:
    """(one line: the exception's type and message, the full trace) of a failed trial.

    Tune writes the trace into the trial's local staging folder when the trial fails and copies it
    to the experiment's storage only at its next snapshot, so the local file is read first
    (``Trial.get_error`` reads storage, where the file is not yet when this runs). Only the text
    trace is read: paitune never unpickles a file (Tune's pickled copy of the error included)."""
    text = None
    try:
        local = getattr(trial, "error_file", None)
        if local and os.path.exists(local):
            text = Path(local).read_text(errors="replace")
        else:
            text = trial.get_error()
    except Exception:  # an unreadable error file must not lose the trial's row
        text = None
    # The trace ends with the exception the trial function raised: "Type: message".
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return (lines[-1] if lines else NO_TRACE), str(text or NO_TRACE)


def remove_incomplete_trials(root: str | Path | Location) -> list[str]:
    """Clear what a killed writer left: temporaries, the epochs/layers files of a trial whose
    trials file (always written last) is missing, and what an interrupted compaction left
    (``paitune.results.layout``). Returns the trial ids whose files were removed; the ones Tune
    still knows are written again, whole, when they end."""
    root = locate(root)
    for folder in (*TABLES, ERRORS_DIR):
        remove_stale_temporaries(root.join(folder))
    found = clear_compaction_leftovers(root)
    done = found.trial_ids
    removed = set()
    for table in ("epochs", "layers"):
        folder = root.join(table)
        for name in found.files[table]:
            if not is_compacted(name) and trial_id_of(name) not in done:
                folder.delete(name)
                removed.add(trial_id_of(name))
    return sorted(removed)


def finished_dense_references(root: str | Path | Location) -> dict[str, float]:
    """``reference_key`` -> test_acc of the dense references already written under ``root/trials``."""
    wanted = ["method", "status", "config_json", "context", "test_acc"]
    root = locate(root)
    table = read_parquet_files(root.join("trials"), layout(root).files["trials"], columns=lambda schema: wanted)
    if table is None:
        return {}
    found = {}
    for row in table.to_pylist():
        if row["method"] == "dense" and row["status"] == "completed":
            found[reference_key(json.loads(row["config_json"]), row["context"])] = row["test_acc"]
    return found


_writer: ThreadPoolExecutor | None = None
_pending: list[Future] = []
_writer_lock = threading.Lock()


def _submit(fn, *args) -> None:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paitune-parquet")
        # Raise a failed earlier write here, on the driver's thread, before queueing more.
        done = [f for f in _pending if f.done()]
        for future in done:
            _pending.remove(future)
        for future in done:
            future.result()
        _pending.append(_writer.submit(fn, *args))


_failure: str | None = None  # the first results write of this sweep that failed, as one line


def write_failure() -> str | None:
    return _failure


def reset_write_failure() -> None:
    global _failure
    _failure = None


def _failed(err: OSError, root: Location) -> str:
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return f"cannot write the results under {root}: {err.strerror or err}{where}; free space or make it writable"


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# The same errors as a trial's trace shows them ("OSError: [Errno 28] ...").
DISK_TRACE = re.compile(r"[Ee]rrno (" + "|".join(str(code) for code in DISK_ERRNOS) + r")\b")


def disk_failure(err: BaseException, root: Location) -> str | None:
    """The one line for ``err`` when it is (or was caused by) a full or read-only disk."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return _failed(err, root)
        err = err.__cause__ or err.__context__
    return None


def flush_for_snapshot() -> bool:
    """Before one of Tune's experiment snapshots: wait for the queued writes; False (take no
    snapshot) once a write has failed, so a snapshot never records as ended a trial whose rows
    are missing, and ``--resume`` reruns or retries it."""
    flush_writes()
    return _failure is None


def flush_writes() -> None:
    """Wait for every queued trial write of this process; raise the first that failed."""
    with _writer_lock:
        pending = list(_pending)
        _pending.clear()
    errors = []
    for future in pending:
        try:
            future.result()
        except Exception as err:  # noqa: PERF203 (every write is waited for, the first error raised)
            errors.append(err)
    if errors:
        raise errors[0]


class ParquetSink(Callback):
    def __init__(self, root: str | Path | Location, experiment: str, schema: pa.Schema, search_params: list[str],
                 *, background: bool = False):  # fmt: skip
        self.background = background
        self.root = locate(root)
        self.experiment = experiment
        self.schema = schema
        self.search_params = list(search_params)
        self.records: dict[str, TrialRecord] = {}
        self.written: list[str] = []
        self.dense_acc: dict[str, float] = {}  # reference_key -> test_acc of its finished dense reference

    def setup(self, **info):
        # Called when a run starts, also a resumed one (whose sink is unpickled, not constructed).
        remove_incomplete_trials(self.root)
        self.dense_acc = finished_dense_references(self.root)

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id not in self.records:
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, dict(trial.config))
        return self.records[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        fault_point("sink-result")
        self._record(trial).add_result(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        last = record.last or trial.last_result or {}
        self._write(record, trial_outcome(last, error=False), last.get(ERROR_KEY))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._stop_on_disk_error(trial_error(trial)[0])

    def on_trial_error(self, iteration, trials, trial, **info):
        line, trace = trial_error(trial)
        if self._stop_on_disk_error(line):
            return  # not the trial's fault: --resume runs it again
        self._write(self._record(trial), "failed", line, trace)

    def _stop_on_disk_error(self, line: str) -> bool:
        """A trial that failed writing its checkpoint to a full or read-only disk: stop the sweep
        at once (retrying it, or the next trial, would fail the same way)."""
        global _failure
        if not DISK_TRACE.search(line):
            return False
        if _failure is None:
            _failure = f"cannot write the results under {self.root}: {line}; free space or make it writable"
            from paitune.search.interrupt import request_stop

            request_stop(_failure)
        return True

    def on_experiment_end(self, trials, **info):
        flush_writes()

    def _write(self, record: TrialRecord, status: str, error: str | None, trace: str | None = None) -> None:
        if not self.background:
            self.write(record, status, error, trace)
            return
        # The record leaves the driver's table now; the writer thread owns it.
        self.records.pop(record.trial_id, None)
        _submit(self._write_or_stop, record, status, error, trace)

    def _write_or_stop(self, record: TrialRecord, status: str, error: str | None, trace: str | None) -> None:
        """A write that fails for want of space or permission stops the sweep (as a first Ctrl-C
        does) instead of failing Tune's loop; the trials after it are left to ``--resume``."""
        global _failure
        if _failure is not None:
            return
        try:
            self.write(record, status, error, trace)
        except OSError as err:
            _failure = _failed(err, self.root)
            self._remove_partial(record.trial_id)
            from paitune.search.interrupt import request_stop

            request_stop(_failure)

    def _remove_partial(self, stem: str) -> None:
        """The files of a trial whose trials file was not written (best effort: a read-only
        directory keeps them, and ``--resume`` removes them)."""
        if stem in written_trial_ids(self.root):
            return
        for folder in ("epochs", "layers"):
            try:
                self.root.join(folder).delete(f"{stem}.parquet")
            except OSError:
                pass

    def write(self, record: TrialRecord, status: str, error: str | None, trace: str | None = None) -> None:
        stem = record.trial_id
        if trace is not None:
            write_text_atomic(trace, self.root.join(ERRORS_DIR), f"{stem}.txt")
        write_table_atomic(epoch_rows(record, experiment=self.experiment), self.root.join("epochs"), stem)
        write_table_atomic(layer_rows(record, experiment=self.experiment), self.root.join("layers"), stem)
        fault_point("sink-before-trials-file")
        config = trial_config(record.config)
        reference = reference_key(config, record_context(record.config, config))
        if config["method"] == "dense" and status == "completed" and record.epochs:
            self.dense_acc[reference] = record.epochs[max(record.epochs)].get("test_acc")
        row = trial_row(
            record, experiment=self.experiment, status=status, error=error, schema=self.schema,
            search_params=self.search_params, dense_test_acc=self.dense_acc.get(reference),
        )  # fmt: skip
        write_table_atomic(row, self.root.join("trials"), stem)
        self.records.pop(record.trial_id, None)
        self.written.append(record.trial_id)
