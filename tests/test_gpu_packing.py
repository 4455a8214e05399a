"""GPU packing on a machine without a GPU: Ray is told of one GPU that is not there (``bench.gpu_packing
--fake-gpus``), so the placement path of ``paitune sweep --gpus-per-trial`` runs for real while the
trials train on the CPU. Fractions of the one GPU must cap the trials that run at once, whatever
``--max-concurrent`` allows.

The benchmark starts its own Ray (``num_gpus=1``; the shared ``ray_session`` has none), so it runs
as a subprocess in a process session of its own, killed by pid afterwards (``spawned_sessions``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, paitune_env

if str(ROOT) not in sys.path:  # bench/ is a package of the repository, not of the installed paitune
    sys.path.insert(0, str(ROOT))

from bench.gpu_packing import max_running  # noqa: E402


def test_max_running_counts_overlaps_and_not_touching_ends():
    assert max_running([]) == 0
    assert max_running([("a", 0.0, 1.0), ("b", 1.0, 2.0), ("c", 2.0, 3.0)]) == 1  # back to back
    assert max_running([("a", 0.0, 3.0), ("b", 1.0, 2.0), ("c", 1.5, 4.0), ("d", 3.5, 5.0)]) == 3
    assert max_running([("a", 0.0, 1.0), ("b", 0.0, 1.0)]) == 2


def _bench(out: Path, sessions: list[int], *args: str, timeout: float) -> subprocess.CompletedProcess:
    log = out / "log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_packing", "--out", str(out), *args], cwd=ROOT,
                                stdout=handle, stderr=subprocess.STDOUT, env=paitune_env(), start_new_session=True)  # fmt: skip
        sessions.append(proc.pid)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"bench.gpu_packing ran over {timeout} s:\n{log.read_text()[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, status, log.read_text(), "")


@pytest.mark.slow
def test_fractional_gpus_cap_the_trials_running_at_once(tmp_path, spawned_sessions):
    # 4 requested, each with its paired shuffle arm (the cifar preset's control: [none, shuffle]), + 1
    # unpruned reference = 9 tiny trials per sweep, and room for 8 at once: one must wait.
    begun = time.monotonic()
    proc = _bench(tmp_path, spawned_sessions, "--quick", "--fake-gpus", "--packings", "4", "1", "--max-concurrent", "8",
                  "--trials", "4", timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = json.loads((tmp_path / "gpu_packing.json").read_text())
    assert result["settings"]["fake_gpus"] is True and result["settings"]["ray_gpus"] == 1
    quarter, whole = result["rows"]
    device = "cuda" if result["settings"]["cuda"] else "cpu"  # Ray's GPU is declared; CUDA decides where trials run
    assert (quarter["packing"], quarter["gpus_per_trial"], quarter["max_concurrent"]) == (4, 0.25, 8)
    assert (whole["packing"], whole["gpus_per_trial"], whole["max_concurrent"]) == (1, 1.0, 8)
    for row in (quarter, whole):
        # every trial ran, where the trial function put it, and Tune's record times each of them
        assert row["trials"] == row["completed"] == row["timed_trials"] == len(row["timeline"]) == 4 * 2 + 1
        assert row["devices"] == device
        assert row["trials_per_hour"] == pytest.approx(row["trials"] / row["wall_s"] * 3600)
    # A quarter of the GPU each: never more than 4 at once, though 8 were allowed, and 4 did run together.
    assert quarter["max_running"] == 4
    # The whole GPU each: one at a time.
    assert whole["max_running"] == 1
    starts_ends = sorted(whole["timeline"])
    assert all(end <= next_start for (_, end), (next_start, _) in zip(starts_ends, starts_ends[1:]))
    summary = result["summary"]
    assert summary["same_trials_every_packing"] and summary["all_completed"] and summary["packing_within_gpu"]
    assert whole["speedup"] == 1.0 and quarter["speedup"] == pytest.approx(
        quarter["trials_per_hour"] / whole["trials_per_hour"]
    )
    assert not (tmp_path / "gpu_packing.partial.json").exists()  # removed once the whole run is written
    print(f"fake-GPU packing test: {time.monotonic() - begun:.1f} s")


def test_without_a_gpu_it_skips_and_says_so(tmp_path, capsys):
    import torch

    from bench.gpu_packing import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the benchmark would run, not skip")
    threads = torch.get_num_threads()
    try:
        assert main(["--quick", "--out", str(tmp_path)]) == 0  # no Ray is started: nothing to clean up
    finally:
        torch.set_num_threads(threads)  # main() fixes torch's threads for a benchmark run
    assert "gpu_packing: skipped: no CUDA GPU" in capsys.readouterr().out
    result = json.loads((tmp_path / "gpu_packing.json").read_text())
    assert result["rows"] == [] and result["summary"] == {"skipped": "no CUDA GPU"}
    assert result["benchmark"] == "gpu_packing" and result["quick"] is True
    # A measured result already there (say, a GPU run's JSON copied back) is not overwritten.
    measured = {**result, "settings": {"cuda": True}, "rows": [{"packing": 1}], "summary": {"best_packing": 1}}
    (tmp_path / "gpu_packing.json").write_text(json.dumps(measured))
    try:
        assert main(["--quick", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "kept " in capsys.readouterr().out
    assert json.loads((tmp_path / "gpu_packing.json").read_text()) == measured


FAKE_CONTROL = """#!/bin/sh
# Stands in for nvidia-cuda-mps-control: records its arguments, MPS folders and stdin.
{ echo "args: $*"; echo "pipe: $CUDA_MPS_PIPE_DIRECTORY"; echo "log: $CUDA_MPS_LOG_DIRECTORY";
  [ "$1" = "-d" ] || echo "stdin: $(cat)"; } >> "$MPS_RECORD"
[ "$1" = "-d" ] && exit "${MPS_START_STATUS:-0}"
exit 0
"""


def _fake_control(tmp_path, monkeypatch, status: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(FAKE_CONTROL)
    control.chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MPS_RECORD", str(record))
    monkeypatch.setenv("MPS_START_STATUS", str(status))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setenv("CUDA_MPS_LOG_DIRECTORY", "/elsewhere")  # a value there before is restored
    return record


def test_mps_daemon_starts_exports_its_folders_and_quits(tmp_path, monkeypatch):
    from bench.mps import mps_daemon

    record = _fake_control(tmp_path, monkeypatch)
    with mps_daemon(tmp_path / "mps") as facts:
        pipe = tmp_path / "mps" / "mps-pipe"
        assert facts == {"mps": True, "mps_pipe_directory": str(pipe)}
        assert os.environ["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe) and pipe.is_dir()
        assert os.environ["CUDA_MPS_LOG_DIRECTORY"] == str(tmp_path / "mps" / "mps-log")
        assert record.read_text().splitlines()[0] == "args: -d"
    lines = record.read_text().splitlines()
    assert lines[3:] == ["args: ", f"pipe: {pipe}", f"log: {tmp_path / 'mps' / 'mps-log'}", "stdin: quit"]
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and os.environ["CUDA_MPS_LOG_DIRECTORY"] == "/elsewhere"


def test_mps_daemon_that_cannot_start_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    from bench.mps import MpsUnavailable, mps_daemon

    _fake_control(tmp_path, monkeypatch, status=1)
    with pytest.raises(MpsUnavailable, match="-d exited 1"):
        with mps_daemon(tmp_path / "mps"):
            raise AssertionError("the block must not run")
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and os.environ["CUDA_MPS_LOG_DIRECTORY"] == "/elsewhere"
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MpsUnavailable, match="not on PATH"):
        with mps_daemon(tmp_path / "mps"):
            raise AssertionError("the block must not run")


def test_mps_without_cuda_is_refused(tmp_path, capsys):
    import torch

    from bench.gpu_packing import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["--quick", "--fake-gpus", "--mps", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert stopped.value.code == 2 and "--mps needs a CUDA GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
