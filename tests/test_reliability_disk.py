"""Reliability: a full disk (ENOSPC) or a read-only results directory in the middle of a sweep.

The sweep stops with one line (exit status 2) that says what failed and the ``--resume`` command,
leaves no partial file visible, and ``--resume`` once space is back completes it with nothing lost
or duplicated. Real filesystems where the test may mount one (a small tmpfs, filled up or
remounted read-only while trials run); an injected write failure (``PAITUNE_FAIL_WRITES``,
paitune.search.faults) always.
"""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import start_paitune
from test_reliability_faults import FIFO_ARGS, _wait, _wait_for, check_sweep_is_whole, fifo_space

EPOCHS = 12
NUM_SAMPLES = 4
SPACE = fifo_space("disk", EPOCHS, NUM_SAMPLES)
ARGS = FIFO_ARGS
REASONS = {"full": "No space left on device", "read-only": "Read-only file system"}


def _visible_files_are_whole(root: Path) -> list[str]:
    """Every file a reader sees is a whole Parquet file; a trial's epochs/layers files are there
    only with its trials file (a trial whose trials file failed leaves none behind, where the
    directory still allows removing them). Returns the trial ids written."""
    written = sorted(p.stem for p in (root / "trials").glob("*.parquet")) if (root / "trials").exists() else []
    for table in ("trials", "epochs", "layers"):
        folder = root / table
        if not folder.exists():
            continue
        assert not [p.name for p in folder.iterdir() if not p.name.endswith(".parquet")], table
        for path in folder.glob("*.parquet"):
            pq.read_table(path)
    return written


def _resume_command(first, log: Path, reason: str) -> list[str]:
    """The driver ended with status 2 and one line naming ``reason``; the command it printed."""
    assert _wait(first, 300) == 2, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("paitune sweep: error: cannot write the results under") and reason in last, last
    return shlex.split(last.split("resume with: ", 1)[1])


def _resume_and_check(tmp_path, command, root: Path, written_before, spawned_sessions) -> None:
    assert command[:3] == ["paitune", "sweep", "--resume"]
    resumed = start_paitune(command[1:], tmp_path / "resumed.log")
    spawned_sessions.append(resumed.pid)
    assert _wait(resumed, 300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    trials = check_sweep_is_whole(root, root.name, NUM_SAMPLES, EPOCHS, arms=0, dense=1)
    assert set(written_before) <= set(trials.trial_id)
    assert (trials.status == "completed").all()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS"])
def test_injected_write_failure_stops_with_one_line_and_resume_completes(tmp_path, errno_name, spawned_sessions):
    space = tmp_path / "disk.yaml"
    space.write_text(SPACE)
    out, name = tmp_path / "out", "s"
    log = tmp_path / "first.log"
    # the 5th results file: the second trial's layers file (its epochs file is already on disk)
    first = start_paitune(["sweep", str(space), "--out", str(out), "--name", name, *ARGS], log,
                          PAITUNE_FAIL_WRITES=f"5:{errno_name}")  # fmt: skip
    spawned_sessions.append(first.pid)
    reason = REASONS["full" if errno_name == "ENOSPC" else "read-only"]
    command = _resume_command(first, log, reason)
    written = _visible_files_are_whole(out / name)
    assert len(written) == 1  # the first trial's three files, nothing of the second
    assert sorted(p.stem for p in (out / name / "epochs").glob("*.parquet")) == written
    _resume_and_check(tmp_path, command, out / name, written, spawned_sessions)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def _remount_read_only(where: Path) -> None:
    """The kernel refuses a read-only remount while a file on it is open for writing (EBUSY): try
    for a while, as an administrator would; skip where it never lets go (the injected EROFS test
    covers the sweep's side)."""
    deadline = time.monotonic() + 30
    while subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.skip("the kernel kept the tmpfs busy (a file open for writing): no read-only remount")
        time.sleep(0.2)


@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB tmpfs (the sweep needs about half of it), or a skip where mounting is not allowed."""
    where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(where, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_real_filesystem_full_or_read_only_mid_sweep(tmp_path, small_fs, fault, spawned_sessions):
    space = tmp_path / "disk.yaml"
    space.write_text(SPACE)
    name = "s"
    root = small_fs / name
    log = tmp_path / "first.log"
    first = start_paitune(["sweep", str(space), "--out", str(small_fs), "--name", name, *ARGS], log)
    spawned_sessions.append(first.pid)
    assert _wait_for(lambda: any((root / "trials").glob("*.parquet")), first, 300), log.read_text()[-3000:]
    filler = small_fs / "filler"
    if fault == "full":  # another program fills the disk
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    else:  # an administrator remounts it read-only
        _remount_read_only(small_fs)
    command = _resume_command(first, log, REASONS[fault])
    written = _visible_files_are_whole(root)
    assert written
    if fault == "full":
        filler.unlink()
    else:
        assert subprocess.run(["mount", "-o", "remount,rw", str(small_fs)]).returncode == 0
    _resume_and_check(tmp_path, command, root, written, spawned_sessions)
