"""Reliability: the experiment lock is a lease that works across hosts sharing a filesystem.

Another host's driver is simulated by its lock file (a host name that is not this one, a pid,
the lease's last renewal); drivers on this host are real processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paitune.errors import PaituneError
from paitune.search import lock as lockmod
from paitune.search.lock import LOCK_FILE, SweepLock, lock_holder


def _write_lock(folder: Path, **record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    path.write_text(json.dumps({"token": "theirs", "lease_s": 30.0, **record}))
    return path


def _mine(folder: Path) -> dict:
    return json.loads((folder / LOCK_FILE).read_text())


def test_another_hosts_live_lease_is_refused_and_an_expired_one_taken(tmp_path):
    folder = tmp_path / "s"
    _write_lock(folder, host="other-host", pid=4242, start=1, renewed=time.time() - 5)
    with pytest.raises(PaituneError) as info:
        SweepLock(folder, "s", renew=False)
    line = str(info.value)
    assert "\n" not in line and "already running (pid 4242) on host other-host, lease renewed 5 s ago" in line
    assert lock_holder(folder)["host"] == "other-host"

    # not renewed for longer than its lease (30 s): the other host's driver is gone
    _write_lock(folder, host="other-host", pid=4242, start=1, renewed=time.time() - 31)
    assert lock_holder(folder) is None
    lock = SweepLock(folder, "s", renew=False)
    try:
        assert _mine(folder)["host"] == socket.gethostname() and _mine(folder)["pid"] == os.getpid()
        assert not list(folder.glob(".lock.*"))  # no private file or takeover mutex left
    finally:
        lock.release()
    assert not (folder / LOCK_FILE).exists()


def test_same_host_dead_or_reused_pid_is_stale_live_one_holds(tmp_path):
    folder = tmp_path / "s"
    here = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = lockmod.process_start_time(child.pid)
        # a live holder, however old its lease: on its own host the pid, not the clock, decides
        _write_lock(folder, host=here, pid=child.pid, start=start, renewed=time.time() - 3600)
        with pytest.raises(PaituneError, match=f"already running \\(pid {child.pid}\\) on host {here}"):
            SweepLock(folder, "s", renew=False)
        # the same pid with another start time: the kernel gave the number to another process
        _write_lock(folder, host=here, pid=child.pid, start=start + 1, renewed=time.time())
        assert lock_holder(folder) is None
    finally:
        child.kill()
        child.wait()
    _write_lock(folder, host=here, pid=child.pid, start=start, renewed=time.time())  # dead now
    assert lock_holder(folder) is None
    SweepLock(folder, "s", renew=False).release()


def test_a_lock_file_cut_short_is_judged_by_its_age(tmp_path):
    folder = tmp_path / "s"
    path = _write_lock(folder)
    path.write_text('{"host": "oth')
    with pytest.raises(PaituneError, match="already running"):
        SweepLock(folder, "s", renew=False)
    old = time.time() - 2 * lockmod.DEFAULT_LEASE_S
    os.utime(path, (old, old))
    SweepLock(folder, "s", renew=False).release()


def _race(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        SweepLock(Path(folder), "s", renew=False)  # never released: the winner keeps it
        results.put(("took", os.getpid()))
        time.sleep(2)  # alive (its pid holds the lock) while the others judge
    except PaituneError as err:
        results.put(("refused", str(err)))


def test_two_takers_of_a_stale_lock_never_both_take_it(tmp_path):
    """Eight processes find the same stale lock (another host, lease expired) at once: exactly one
    takes it, every other one is refused with the winner named."""
    folder = tmp_path / "s"
    for _ in range(3):  # several rounds: the interleaving differs each time
        _write_lock(folder, host="other-host", pid=1, start=1, renewed=time.time() - 3600)
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(folder), barrier, results)) for _ in range(8)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        took = [pid for kind, pid in outcomes if kind == "took"]
        assert len(took) == 1, outcomes
        assert _mine(folder)["pid"] == took[0]
        assert all("already running" in text for kind, text in outcomes if kind == "refused")
        (folder / LOCK_FILE).unlink()


def test_the_lease_is_renewed_and_a_lost_lock_stops_the_driver(tmp_path, monkeypatch):
    folder = tmp_path / "s"
    lock = SweepLock(folder, "s", lease_s=0.4)
    try:
        first = _mine(folder)["renewed"]
        deadline = time.monotonic() + 10
        while _mine(folder)["renewed"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _mine(folder)["renewed"] > first  # the heartbeat moved it forward
        # another driver took the lock (this one looked dead to it): this one asks its sweep to stop
        asked = []
        monkeypatch.setattr("paitune.search.interrupt.request_stop", asked.append)
        _write_lock(folder, host="other-host", pid=7, start=1, renewed=time.time())
        deadline = time.monotonic() + 10
        while not asked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asked and "held by pid 7 on host other-host" in asked[0]
        assert _mine(folder)["host"] == "other-host"  # never overwritten by the loser
    finally:
        lock.release()
    assert _mine(folder)["host"] == "other-host"  # release removes only its own lock


def test_without_hard_links_the_lock_is_created_exclusively(tmp_path, monkeypatch):
    """A filesystem without hard links (some FUSE mounts): the lock is still taken once only."""
    import errno

    def no_link(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(lockmod.os, "link", no_link)
    folder = tmp_path / "s"
    lock = SweepLock(folder, "s", renew=False)
    try:
        assert _mine(folder)["pid"] == os.getpid()
        with pytest.raises(PaituneError, match="already running"):
            SweepLock(folder, "s", renew=False)
    finally:
        lock.release()
    assert not (folder / LOCK_FILE).exists()
