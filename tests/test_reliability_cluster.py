"""Worker node lost: a real two-node Ray cluster on this machine (``ray start --head`` plus a
worker node, token authentication on), a sweep joined with ``--address``; the worker's raylet is
SIGKILLed while it trains a trial. The trial must be retried from its last checkpoint (one per epoch
here: ``--checkpoint-every 0``) on
the surviving node and the sweep must complete with every result.

Everything runs in subprocesses, each in its own process session, so this test never touches the
pytest process's own Ray (the ``ray_session`` fixture) and kills exactly what it started, by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, kill_session, paitune_env, session_pids

EPOCHS = 30
SPACE = f"""
name: cluster
settings: {{dataset: digits, model: mlp, epochs: {EPOCHS}, batch_size: 4, lr: 0.01, sparsity: 0.5}}
params:
  method: {{type: categorical, choices: [random, magnitude, snip]}}
seeds: [0]
scheduler: {{type: fifo}}
num_samples: 3
"""
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_worker_node_lost_trials_retry_from_checkpoint(tmp_path, spawned_sessions, request):
    env = paitune_env(RAY_AUTH_MODE="token")  # both nodes and the driver: Ray's token auth on
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    # Each node gets a private Ray temp dir (short: Ray's socket paths must fit in 107 bytes), so
    # `ray start` does not record this cluster in /tmp/ray/ray_current_cluster, where any later
    # plain ray.init() on the machine would try to join it.
    temp_dirs = [Path(tempfile.mkdtemp(prefix="pt", dir="/tmp")) for _ in range(2)]
    request.addfinalizer(lambda: [shutil.rmtree(d, ignore_errors=True) for d in temp_dirs])

    def start(args, log):
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(logs / log, "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        spawned_sessions.append(proc.pid)
        return proc

    head = start([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                  "--dashboard-host=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp_dirs[0]}", "--block"],
                 "head.log")  # fmt: skip
    raylets = lambda proc: [p for p in session_pids(proc.pid) if _cmdline(p)[0].endswith("/raylet")]  # noqa: E731
    _until(lambda: raylets(head), 90, "the head's raylet")
    worker = start([RAY, "start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats",
                    f"--temp-dir={temp_dirs[1]}", "--block"], "worker.log")  # fmt: skip
    (worker_raylet,) = _until(lambda: raylets(worker), 90, "the worker's raylet")
    time.sleep(3)  # let the worker node register with the head

    space = tmp_path / "cluster.yaml"
    space.write_text(SPACE)
    out = tmp_path / "out"
    driver = start([sys.executable, "-c", "import sys; from paitune.cli import main; sys.exit(main())", "sweep",
                    str(space), "--address", address, "--out", str(out), "--name", "c", "--sampler", "grid",
                    "--max-concurrent", "2", "--max-failures", "3", "--checkpoint-every", "0", "--tune-logs", "--quiet"], "driver.log")  # fmt: skip

    def trial_on_worker():
        for pid in session_pids(worker.pid):
            cwd = _cwd(pid)
            if "working_dirs/trial_" in cwd:
                return cwd.rsplit("trial_", 1)[1].split("/")[0]
        return None

    victim = _until(trial_on_worker, 120, "a trial running on the worker node")
    trial_dir = out / "c" / "tune" / f"trial_{victim}"
    _until(lambda: len(list(trial_dir.glob("checkpoint_*"))) >= 2, 120, "the victim's second checkpoint")

    def driver_has_seen(n):
        # The driver logs each result it has processed (and registered the checkpoint of) in its
        # staging folder under the head's temp dir: wait until it knows the 2nd checkpoint.
        logs = list(temp_dirs[0].rglob(f"driver_artifacts/trial_{victim}/result.json"))
        return logs and len(logs[0].read_text().splitlines()) >= n

    _until(lambda: driver_has_seen(3), 120, "the driver to register the victim's checkpoints")
    os.kill(worker_raylet, signal.SIGKILL)  # the worker node is lost mid-trial

    assert driver.wait(timeout=400) == 0, (logs / "driver.log").read_text()[-4000:]
    trials = pd.read_parquet(out / "c" / "trials").set_index("trial_id")
    # 3 sampled trials + the dense reference, all whole
    assert len(trials) == 4 and (trials.status == "completed").all() and (trials.epochs_run == EPOCHS).all()
    epochs = pd.read_parquet(out / "c" / "epochs")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert sorted(epochs[epochs.trial_id == victim].epoch) == list(range(1, EPOCHS + 1))
    # Tune's own record of the victim: the lost node was recorded as a failure, and the retry began
    # after the 2nd checkpoint, not at epoch 1. Whether the log also holds the lines from before the
    # loss depends on whether the driver had synced it to storage by then (Tune restores the log from
    # storage and appends), so the retry is found as the last line where iterations_since_restore is 1.
    assert (trial_dir / "error.txt").exists()
    results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
    trace = [(r["iterations_since_restore"], r["epoch"]) for r in results]
    retry = max(i for i, r in enumerate(results) if r["iterations_since_restore"] == 1)
    first = results[retry]["epoch"]
    assert first >= 3, trace
    assert [r["epoch"] for r in results[retry:]] == list(range(first, EPOCHS + 1)), trace
    assert [r["epoch"] for r in results[:retry]] == list(range(1, retry + 1)), trace  # the run before the loss
    # the retry's first report carried the epochs from before the loss (the sink's history)
    assert [h["epoch"] for h in json.loads(results[retry]["history_json"])] == list(range(1, first)), trace
    assert "Traceback" not in (logs / "driver.log").read_text().split("paitune sweep:")[-1]
    # what this test started, it stops (the fixture kills every session by pid; check it worked)
    for proc in (driver, worker, head):
        kill_session(proc.pid)
        assert not session_pids(proc.pid)
    assert (
        not Path("/tmp/ray/ray_current_cluster").exists()
        or address not in Path("/tmp/ray/ray_current_cluster").read_text()
    )
