"""Shared fixtures and helpers.

``ray_session``: one real Ray instance for the whole test session (starting Ray costs seconds).
Tests that start Ray elsewhere (a ``paitune sweep`` subprocess, a two-node cluster) start it in a
new process session and kill every process of that session by pid when done (``kill_session``),
so no Ray process outlives its test and the next ``ray.init`` starts fresh.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def kill_session(sid: int, timeout: float = 10.0) -> list[int]:
    """SIGKILL every live process of session ``sid`` (a process a test started with
    ``start_new_session=True`` and all it spawned); returns the pids it found."""
    found = session_pids(sid)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def paitune_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PAITUNE_KILL_AT", None)
    env.update(extra)
    return env


def start_paitune(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``paitune ARGS`` in a new process session (its Ray processes join that session)."""
    handle = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from paitune.cli import main; sys.exit(main())", *args], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
        env=paitune_env(**env), start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def spawned_sessions():
    """Sessions (pids of processes started with start_new_session=True) to kill after the test."""
    sessions: list[int] = []
    yield sessions
    for sid in sessions:
        kill_session(sid)


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray (not local mode) with 2 CPUs, started once and shut down at the end."""
    import ray

    # Same output settings paitune sweep uses; set before Tune reads them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",  # never join a cluster some `ray start` recorded in /tmp/ray
            num_cpus=2,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            logging_level="warning",
            # Trial workers inherit this; keeps test output readable.
            log_to_driver=False,
        )
    yield ray
    if started:
        ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """A test that uses the shared Ray instance is a ``ray`` test, marked or not: ``make test-fast``
    (``-m "not slow and not ray"``) then never starts Ray."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
