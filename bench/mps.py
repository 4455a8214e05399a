"""NVIDIA MPS (Multi-Process Service) around a benchmark that packs trials onto one GPU.

Processes that share a GPU without MPS each hold their own CUDA context, and the GPU time-slices
between contexts: the kernels of one process run at a time, so small trials packed together
mostly take turns. The MPS control daemon runs one server context that every client process
connects to, and their kernels can then run side by side.

``mps_daemon`` starts the control daemon with its pipe and log folders under a given folder,
exports them to this process's environment (Ray's raylet, and through it every trial's worker,
inherits them when Ray starts inside the block; a process that initialized CUDA before does not
use MPS), and on leaving tells the daemon to quit and restores the environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
PIPE_ENV, LOG_ENV = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
TIMEOUT_S = 30


class MpsUnavailable(RuntimeError):
    """The MPS control daemon could not be started (no binary, or it refused)."""


@contextlib.contextmanager
def mps_daemon(folder: Path) -> Iterator[dict]:
    """MPS on for the block; yields the facts a benchmark records (``mps``, the pipe folder)."""
    control = shutil.which(CONTROL)
    if control is None:
        raise MpsUnavailable(f"{CONTROL} is not on PATH (NVIDIA's driver utilities provide it)")
    pipe, log = Path(folder) / "mps-pipe", Path(folder) / "mps-log"
    pipe.mkdir(parents=True, exist_ok=True)
    log.mkdir(parents=True, exist_ok=True)
    before = {name: os.environ.get(name) for name in (PIPE_ENV, LOG_ENV)}
    os.environ[PIPE_ENV], os.environ[LOG_ENV] = str(pipe), str(log)
    try:
        started = subprocess.run([control, "-d"], capture_output=True, text=True, timeout=TIMEOUT_S)
        if started.returncode != 0:
            why = (started.stderr or started.stdout).strip().splitlines()
            raise MpsUnavailable(f"{CONTROL} -d exited {started.returncode}" + (f": {why[-1]}" if why else ""))
        try:
            yield {"mps": True, "mps_pipe_directory": str(pipe)}
        finally:
            # The daemon ends its server once the clients are gone (Ray is shut down first).
            subprocess.run([control], input="quit\n", capture_output=True, text=True, timeout=TIMEOUT_S)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
