"""``UnsyncedJournalFile``: Optuna's journal file, appended without an ``fsync`` per operation.

Optuna's ``JournalFileBackend`` fsyncs every operation. The fsync
guards the journal against an operating-system crash or power loss, not against a killed driver
(what is written is in the OS's page cache either way), and it was a third of the journal's cost,
~9 ms of the driver's time per trial at the boundary between two trials. Appends still take
Optuna's own lock file, so another process writing the study at the same time stays safe. After an
OS crash, the journal may lack its last operations: ``--resume`` then retries trials it does not
know finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalFileSymlinkLock


def append_whole(path: str | Path, data: bytes) -> None:
    """Append ``data`` whole or not at all: a write that fails part way (a full disk) is cut back
    off. Otherwise a later append, once some space is freed, would land after half a line and
    Optuna's reader would refuse everything from there on."""
    with open(path, "ab", buffering=0) as handle:
        start = handle.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[handle.write(view) :]
        except BaseException:
            try:
                handle.truncate(start)
            except OSError:
                pass  # a read-only remount: the cut-off tail is dropped when the journal is next opened
            raise


def drop_partial_last_line(path: Path) -> None:
    """Cut a last line that lacks its newline: an append the driver died in, or one a full disk
    cut short, never committed. Left in place, the next append would run into it, and the merged
    line would hide every operation after it from Optuna's reader."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, 2)
        if handle.read(1) == b"\n":
            return
        # Find the last newline, reading backwards in blocks.
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            end = start
        handle.truncate(0)


class UnsyncedJournalFile(BaseJournalBackend):
    """Optuna's journal file format and lock, appended without an ``fsync`` (see above)."""

    def __init__(self, path: str | Path):
        self._path = str(path)
        self._reader = JournalFileBackend(self._path)  # reads (with its offset cache); creates the file
        self._lock = JournalFileSymlinkLock(self._path)
        self._lock.acquire()
        try:
            drop_partial_last_line(Path(self._path))
        finally:
            self._lock.release()

    def read_logs(self, log_number_from: int):
        return self._reader.read_logs(log_number_from)

    def append_logs(self, logs: list[dict]) -> None:
        # The line format of JournalFileBackend.append_logs: one compact JSON object per line.
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._lock.acquire()
        try:
            append_whole(self._path, data)
        finally:
            self._lock.release()
