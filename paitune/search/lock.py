"""One running driver per experiment directory, also across machines that share the filesystem.

``DIR/NAME/.lock`` is a lease: JSON naming the holder (host, pid, the pid's start time, a random
token) and when it last renewed the lease (``renewed``, Unix time) for how long (``lease_s``). A
driver renews it every ``lease_s / 4`` seconds from a background thread. Another driver judges it:

- held by a process on the same host: held while that pid lives with the recorded start time
  (a pid the kernel gave to another process later does not count), stale once it is gone;
- held from another host, whose processes cannot be seen: stale once the lease has not been
  renewed for ``lease_s`` seconds (the hosts' clocks must agree to well within that).

Taking the lock is atomic: the record is written to a private file and hard-linked to ``.lock``
(``link`` fails if the name exists, on local and NFS filesystems alike; where a filesystem has no
hard links, ``.lock`` is created with ``O_EXCL`` instead). A stale lock is broken
under a takeover mutex (``mkdir .lock.takeover``, atomic too), re-judged inside it, then removed
and taken, so two drivers that find the same stale lock never both take it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from paitune.errors import PaituneError
from paitune.search.ray_procs import process_start_time

LOCK_FILE = ".lock"
TAKEOVER_DIR = ".lock.takeover"
LEASE_ENV = "PAITUNE_LOCK_LEASE_S"
DEFAULT_LEASE_S = 60.0
NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)


def _lease_s() -> float:
    return float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))


def _read(path: Path) -> dict | None:
    """The lock's record; None when there is no lock. A record cut short (a writer that died
    mid-write leaves only its private file, never a partial ``.lock``) reads as {}."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def refusal(name: str, record: dict) -> PaituneError:
    """The one line for a sweep whose lock the driver ``record`` names holds."""
    ago = time.time() - float(record.get("renewed", 0))
    return PaituneError(
        f"sweep {name!r} is already running (pid {record.get('pid', '?')}) on host {record.get('host', '?')}, "
        f"lease renewed {ago:.0f} s ago; wait for it to finish or use another --name"
    )


def is_stale(record: dict, *, now: float | None = None) -> bool:
    """Whether the holder the record names is gone (see the module's docstring)."""
    if not record:
        # Unreadable: only the old age of the file could tell; judged by the caller from mtime.
        return False
    if record.get("host") == socket.gethostname():
        pid = int(record.get("pid", -1))
        return pid <= 0 or process_start_time(pid) != record.get("start")
    now = time.time() if now is None else now
    return now - float(record.get("renewed", 0)) > float(record.get("lease_s", DEFAULT_LEASE_S))


def _live_record(path: Path) -> dict | None:
    record = _read(path)
    if record is None:
        return None
    if not record:  # unreadable: stale once older than a lease
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return None if age > _lease_s() else {**UNKNOWN, "renewed": time.time() - age}
    return None if is_stale(record) else record


def lock_holder(experiment_dir: Path) -> dict | None:
    """The record of the live driver holding the experiment's lock, or None when it is free or
    stale."""
    return _live_record(Path(experiment_dir) / LOCK_FILE)


UNKNOWN = {"pid": "?", "host": "?"}


class SweepLock:
    """Hold the experiment's lock until ``release()``; a thread renews the lease meanwhile."""

    def __init__(self, experiment_dir: Path, name: str, *, lease_s: float | None = None, renew: bool = True):
        self.path = Path(experiment_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_s = _lease_s() if lease_s is None else lease_s
        self.record = {
            "host": socket.gethostname(), "pid": os.getpid(), "start": process_start_time(os.getpid()),
            "token": uuid.uuid4().hex, "lease_s": self.lease_s, "renewed": time.time(),
        }  # fmt: skip
        self.lost: str | None = None  # set when another driver took the lock from this one
        self._stop = threading.Event()
        if not self._create():
            holder = _live_record(self.path)
            if holder is not None:
                raise refusal(name, holder)
            self._take_over_stale(name)
        self._thread = None
        if renew:
            self._thread = threading.Thread(target=self._renew_loop, name="paitune-lock", daemon=True)
            self._thread.start()

    def _write_private(self) -> Path:
        private = self.path.with_name(f"{LOCK_FILE}.{self.record['token']}")
        with open(private, "w") as handle:
            json.dump(self.record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return private

    def _create(self) -> bool:
        """Link the record to ``.lock``; False when a lock is there."""
        private = self._write_private()
        try:
            os.link(private, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:
                raise
            return self._create_exclusive()
        finally:
            private.unlink(missing_ok=True)

    def _create_exclusive(self) -> bool:
        """Where the filesystem has no hard links: create ``.lock`` exclusively and write the
        record into it (a reader may see it empty for a moment, which reads as held)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(self.record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _take_over_stale(self, name: str) -> None:
        mutex = self.path.with_name(TAKEOVER_DIR)
        try:
            mutex.mkdir()
        except FileExistsError:
            # Another driver is taking it over right now (a takeover takes milliseconds; a
            # mutex older than a lease is one a taker died holding, and is cleared for next time).
            try:
                if time.time() - mutex.stat().st_mtime > self.lease_s:
                    mutex.rmdir()
            except OSError:
                pass
            raise refusal(name, _live_record(self.path) or {**UNKNOWN, "renewed": time.time()}) from None
        try:
            holder = _live_record(self.path)  # judged again inside the mutex
            if holder is not None:
                raise refusal(name, holder)
            self.path.unlink(missing_ok=True)
            if not self._create():  # a driver that found no lock at all was here first
                raise refusal(name, _live_record(self.path) or {**UNKNOWN, "renewed": time.time()})
        finally:
            try:
                mutex.rmdir()
            except OSError:
                pass

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.renew()
            except OSError:  # a full or read-only disk: try again; the lease lasts 4 periods
                pass
            if self.lost:
                return

    def renew(self) -> None:
        """Move the lease's time forward, unless another driver holds the lock now."""
        current = _read(self.path)
        if not current or current.get("token") != self.record["token"]:
            who = (
                f"pid {current.get('pid')} on host {current.get('host')}" if current else "nobody: its file was removed"
            )
            self.lost = f"the experiment lock is held by {who}"
            from paitune.search.interrupt import request_stop

            request_stop(f"{self.lost}; this driver stops so that two never run one sweep")
            return
        self.record["renewed"] = time.time()
        private = self._write_private()
        os.replace(private, self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            current = _read(self.path)
            if current and current.get("token") == self.record["token"]:
                self.path.unlink(missing_ok=True)
        except OSError:  # a read-only directory: the record of a dead pid is stale to the next driver
            pass
