"""``--out`` as a URI: the tables, Tune's experiment and paitune's mirrored state go through a
pyarrow filesystem (here ``file://``, which paitune treats exactly like an object store: no local
path shortcuts), paitune's live state stays in a local state directory, ``paitune analyze`` reads
the URI, and a resume on a machine without the local state fetches the mirrored one."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.fs as pafs
import pytest

from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.results.storage import locate
from paitune.search.contexts import study_trials
from paitune.search.parquet_io import TMP_PREFIX, write_table_atomic
from paitune.search.plan import plan_sweep
from paitune.search.sink import remove_incomplete_trials
from paitune.search.study_store import study_storage
from paitune.search.sweep import execute_sweep

SPACE = """
name: uri
settings: {dataset: digits, model: mlp, epochs: 2, batch_size: 128, lr: 0.05, proxies: [grad_norm]}
params:
  method: {type: categorical, choices: [random, magnitude, snip]}
  sparsity: {type: categorical, choices: [0.5, 0.9]}
seeds: [0]
scheduler: {type: fifo}
num_samples: 3
"""


def test_remote_writes_are_atomic_and_cleaned_through_the_filesystem(tmp_path):
    import pyarrow as pa

    where = locate(f"file://{tmp_path}/r")
    assert not where.local and where.uri == f"file://{tmp_path}/r"
    write_table_atomic(pa.table({"a": [1]}), where.join("trials"), "t1")
    write_table_atomic(pa.table({"a": [2]}), where.join("epochs"), "t1")
    write_table_atomic(pa.table({"a": [3]}), where.join("epochs"), "cut")  # its trials file never came
    (tmp_path / "r" / "epochs" / f"{TMP_PREFIX}x.parquet").write_bytes(b"half")
    assert where.join("trials").files() == ["t1.parquet"]
    assert remove_incomplete_trials(where) == ["cut"]
    assert where.join("epochs").files() == ["t1.parquet"]


def test_many_small_files_read_into_few_chunks_with_their_columns_unified(tmp_path):
    """One-row files (a trial's row is a file) read in order, in a few chunks; a column only some
    files have is null elsewhere, an int column that another file holds as float is float, and
    each row can name its file. The same through a file:// URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from paitune.results.storage import READ_BATCH, read_parquet_files

    n = 2 * READ_BATCH + 7
    for i in range(n):
        row = {"trial": [i], "acc": [i / n] if i % 2 else [i]}  # float in odd files, int in even ones
        if i % 3 == 0:
            row["lr"] = [0.1 * i]
        pq.write_table(pa.table(row), tmp_path / f"t{i:04d}.parquet")
    (tmp_path / ".t9999.parquet.tmp").write_text("a writer's temporary")
    for where in (str(tmp_path), tmp_path.as_uri()):
        table = read_parquet_files(locate(where), file_column="file")
        assert table["trial"].to_pylist() == list(range(n)) and table["trial"].num_chunks <= 3
        assert table.schema.field("acc").type == pa.float64() and table["acc"].to_pylist()[3] == 3 / n
        lr = table["lr"].to_pylist()
        assert [v is None for v in lr] == [i % 3 != 0 for i in range(n)] and lr[3] == pytest.approx(0.3)
        assert table["file"].to_pylist()[5].endswith("t0005.parquet")
    only = read_parquet_files(locate(tmp_path), names=["t0002.parquet", "t0001.parquet"], columns=lambda s: ["trial"])
    assert only.column_names == ["trial"] and only["trial"].to_pylist() == [2, 1]
    assert read_parquet_files(locate(tmp_path / "none")) is None


def test_sweep_to_a_uri_then_analyze_and_resume_elsewhere(ray_session, tmp_path, capsys):
    from paitune.analysis import load_results

    space = tmp_path / "uri.yaml"
    space.write_text(SPACE)
    out = f"file://{tmp_path}/bucket/results"
    state = tmp_path / "state"
    # --checkpoint-every 0: these sub-second trials would otherwise save none, and the checkpoints'
    # place (the URI) is what is checked. --compact-min 1: the sweep merges its per-trial files at
    # its end, through the URI's filesystem, and the resumed sweep reads them as written trials.
    plan = plan_sweep(SweepOptions(space=str(space), out=out, name="u", sampler="random", max_concurrent=2,
                                   verbose=0, state_dir=str(state), checkpoint_every_s=0.0,
                                   compact_min=1))  # fmt: skip
    assert plan.experiment_dir == state / "u" and plan.storage_path == out
    execute_sweep(plan)
    remote = tmp_path / "bucket" / "results" / "u"
    # the tables and Tune's experiment are on the "remote" side; paitune's state is mirrored there
    trials = pd.read_parquet(remote / "trials")
    assert len(trials) == 3 + 1 and (trials.status == "completed").all()
    assert len(pd.read_parquet(remote / "epochs")) == 4 * 2
    for table in ("trials", "epochs", "layers"):  # compacted: one file each
        assert [p.name.startswith("compacted-") for p in (remote / table).iterdir()] == [True]
    assert (remote / "tune").is_dir() and any((remote / "tune").glob("trial_*/checkpoint_*"))
    for name in ("sweep.json", "optuna.journal"):  # (asha.json too, under ASHA)
        assert (remote / name).read_bytes() == (state / "u" / name).read_bytes()
    # the live state stayed local: nothing of it, and no table, in the local state directory
    assert not (state / "u" / "trials").exists() and (state / "u" / "optuna.journal").exists()

    results = load_results(f"{out}/u")
    assert len(results.trials) == 4 and len(results.epochs) == 8 and results.sources == (f"{out}/u",)

    # Another machine (no local state): a new sweep of that name is refused, --resume fetches it
    shutil.rmtree(state)
    with pytest.raises(PaituneError, match="already exists"):
        plan_sweep(SweepOptions(space=str(space), out=out, name="u", state_dir=str(state)))
    resumed = plan_sweep(SweepOptions(out=out, name="u", resume=True, verbose=0, state_dir=str(state)))
    assert resumed.options.sampler == "random" and resumed.num_samples == 3
    execute_sweep(resumed)
    assert json.loads((state / "u" / "sweep.json").read_text())["options"]["name"] == "u"
    assert len(study_trials(study_storage(state / "u"), "u")) >= 3  # every context's study came back
    again = pd.read_parquet(remote / "trials")
    assert sorted(again.trial_id) == sorted(trials.trial_id)  # nothing ran twice
    assert len(list((remote / "trials").iterdir())) == 1


def test_analyze_cli_reads_a_uri_and_rejects_a_missing_one(tmp_path):
    from paitune.cli import main

    assert main(["analyze", f"file://{tmp_path}/nothing/here", "--out", str(tmp_path / "rep")]) == 2
    assert not (tmp_path / "rep").exists()
    fs = pafs.LocalFileSystem()
    assert fs.get_file_info(str(tmp_path / "rep")).type == pafs.FileType.NotFound


@pytest.fixture()
def s3_uri(tmp_path):
    """A bucket on a local S3 endpoint (moto's server, started in its own process session and
    killed by pid); yields the URI of a folder in it, credentials and endpoint in the URI."""
    pytest.importorskip("moto")
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from conftest import kill_session

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        options = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        deadline = time.monotonic() + 30
        while True:
            try:
                fs, _ = pafs.FileSystem.from_uri(f"s3://key:secret@bkt?{options}&allow_bucket_creation=true")
                fs.create_dir("bkt")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield f"s3://key:secret@bkt/results?{options}"
    finally:
        kill_session(server.pid)


def test_sweep_to_s3_and_analyze_from_it(ray_session, tmp_path, s3_uri):
    from paitune.analysis import load_results

    space = tmp_path / "uri.yaml"
    space.write_text(SPACE)
    plan = plan_sweep(SweepOptions(space=str(space), out=s3_uri, name="s", sampler="random", max_concurrent=2,
                                   verbose=0, state_dir=str(tmp_path / "state"), checkpoint_every_s=0.0))  # fmt: skip
    execute_sweep(plan)
    bucket = locate(s3_uri).join("s")
    assert {"trials", "epochs", "layers", "tune", "sweep.json", "optuna.journal"} <= {
        info.base_name for info in bucket.fs.get_file_info(pafs.FileSelector(bucket.path))
    }
    assert len(bucket.join("trials").files(".parquet")) == 4
    checkpoints = [i for i in bucket.fs.get_file_info(pafs.FileSelector(bucket.join("tune").path, recursive=True))
                   if "/checkpoint_" in i.path]  # fmt: skip
    assert checkpoints  # Tune's checkpoints went to the bucket too
    results = load_results(bucket.uri)
    assert len(results.trials) == 4 and (results.trials.status == "completed").all()
    assert len(results.epochs) == 8 and len(results.layers) == 4 * 3
