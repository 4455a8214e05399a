"""Fault injection for the reliability tests: kill the driver at a named point, for real, or make
its results writes fail as a full disk does.

``PAITUNE_KILL_AT=POINT:N`` makes the process SIGKILL itself the N-th time it passes
``fault_point(POINT)`` (N defaults to 1). Unset — the only state outside the tests — it costs one
dictionary lookup. A SIGKILL, not an exception: nothing gets to clean up, as with a real crash.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "PAITUNE_KILL_AT"
_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


WRITE_ENV = "PAITUNE_FAIL_WRITES"
_writes = 0


def write_fault() -> None:
    """``PAITUNE_FAIL_WRITES=N[:ERRNO]`` makes the N-th results file written by this process, and
    every later one, fail as a full disk does (``OSError`` with ERRNO, default ENOSPC) after part of
    it is on disk. Unset, it costs one dictionary lookup."""
    spec = os.environ.get(WRITE_ENV)
    if not spec:
        return
    global _writes
    _writes += 1
    nth, _, name = spec.partition(":")
    if _writes >= int(nth):
        code = getattr(errno, name or "ENOSPC")
        raise OSError(code, os.strerror(code))
