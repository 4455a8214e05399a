"""One running sweep per experiment directory: an advisory ``flock`` on ``DIR/NAME/.lock``.

The kernel drops a flock when its process dies, even by SIGKILL, so a killed sweep never leaves a
stale lock behind and ``--resume`` can take over at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from paitune.errors import PaituneError

LOCK_FILE = ".lock"


def lock_holder(experiment_dir: Path) -> str | None:
    """The pid recorded by the process holding the lock, or None when nobody holds it."""
    path = Path(experiment_dir) / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "?"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class SweepLock:
    """Hold the experiment's lock for the life of this object (``release()`` or process exit)."""

    def __init__(self, experiment_dir: Path, name: str):
        self.path = Path(experiment_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "?"
            self._handle.close()
            raise PaituneError(
                f"sweep {name!r} is already running (pid {holder}); wait for it to finish or use another --name"
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
