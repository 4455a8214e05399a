"""Starting Ray for a sweep, and cleaning up after a driver that was killed.

A driver that starts its own local Ray takes Ray's core services (GCS, raylet) down with it even
when it is SIGKILLed, but some of the raylet's helpers (the dashboard and runtime-env agents)
survive as orphans and hold memory and ports. So right after ``ray.init`` paitune records every
process the driver started — pid plus the kernel's start time, so a recycled pid is never
mistaken for ours — in ``DIR/NAME/ray.pids``; the next run of that sweep (``--resume``) kills the
recorded ones that are still alive, and a normal exit removes the record.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from paitune.errors import PaituneError

PID_FILE = "ray.pids"
LOOPBACK = "127.0.0.1"
AUTH_ENV = "RAY_AUTH_MODE"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); with the pid
    it names one process, even after the pid is reused. None if there is no such live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has exited


def _is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2 :].split()[0] == "Z"


def descendants(root: int) -> list[int]:
    """Pids of every live process below ``root`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def record_processes(experiment_dir: Path, pids: list[int]) -> None:
    """Write ``pids`` (with their start times) to DIR/NAME/ray.pids, atomically."""
    entries = [{"pid": pid, "start": start} for pid in pids if (start := process_start_time(pid)) is not None]
    tmp = experiment_dir / f".{PID_FILE}.tmp"
    tmp.write_text(json.dumps({"driver": os.getpid(), "processes": entries}))
    os.replace(tmp, experiment_dir / PID_FILE)


def reap_orphans(experiment_dir: Path) -> list[int]:
    """SIGKILL the recorded processes of a previous driver that are still alive; returns their pids."""
    path = Path(experiment_dir) / PID_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    killed = []
    for entry in record.get("processes", []):
        pid, start = int(entry["pid"]), entry["start"]
        # Only the very process we recorded: same pid *and* same start time.
        if pid == os.getpid() or process_start_time(pid) != start or _is_zombie(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)  # the agents ignore SIGTERM once their raylet is gone
            killed.append(pid)
        except ProcessLookupError:
            pass
    path.unlink(missing_ok=True)
    return killed


def forget_processes(experiment_dir: Path) -> None:
    try:
        (Path(experiment_dir) / PID_FILE).unlink(missing_ok=True)
    except OSError:  # a read-only directory: the next run finds these pids dead, or reaps them
        pass


REACH_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """A ConnectionError unless a plain HOST:PORT address accepts a TCP connection: Ray itself
    retries an unreachable head for minutes, deaf to Ctrl-C. ``auto`` and ``ray://`` addresses
    are Ray's to resolve."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {address} ({err.strerror or err})") from None


def start_ray(address: str | None, experiment_dir: Path) -> bool:
    """Start or join Ray; returns True when this process started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    # log_to_driver=False: the trials' own stdout/stderr stays in Ray's log files (the session's
    # logs/ folder) instead of being interleaved with the progress table; Tune reports a trial's
    # failure with its traceback on the driver anyway, and streaming worker output also prints
    # the noise of workers being terminated at shutdown.
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": False}
    try:
        if address is None:
            # A private single-machine cluster. Its dashboard (HTTP) listens on the loopback
            # interface only. Ray 2.60's core gRPC services (GCS, raylet, workers) listen on every
            # interface whatever the node address, so they rely on Ray's token authentication,
            # which Ray turns on by default for a new local cluster (unless RAY_AUTH_MODE says
            # otherwise); its notice about that default is expected here, not news.
            logging.getLogger(AUTH_LOGGER).setLevel(logging.ERROR)
            # address="local": a new instance even when `ray start` has left its address in
            # /tmp/ray/ray_current_cluster (plain ray.init() would join that cluster instead).
            ray.init(address="local", dashboard_host=LOOPBACK, **kwargs)
        else:
            _check_reachable(address)
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "start one with `ray start --head` (or `ray up cluster.yaml`) or drop --address"
        if "auth" in first.lower() or "token" in first.lower():
            hint = "set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token (see `ray get-auth-token`)"
        raise PaituneError(f"cannot connect to Ray at {address or 'a new local instance'}: {first}; {hint}") from None
    if address is None:
        record_processes(experiment_dir, descendants(os.getpid()))
    return True
