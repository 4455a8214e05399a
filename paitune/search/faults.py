"""Fault injection for the reliability tests: kill the driver at a named point, for real.

``PAITUNE_KILL_AT=POINT:N`` makes the process SIGKILL itself the N-th time it passes
``fault_point(POINT)`` (N defaults to 1). Unset — the only state outside the tests — it costs one
dictionary lookup. A SIGKILL, not an exception: nothing gets to clean up, as with a real crash.
"""

from __future__ import annotations

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
