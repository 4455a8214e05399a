"""Compaction: per-trial result files merged into a few large ones, every row read once whatever
a stopped compaction left, and a sweep that compacts at its end resumes without rerunning."""

from __future__ import annotations

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from planted import PlantedSpec, generate_tables

from paitune.analysis import load_results
from paitune.results.layout import layout, written_trial_ids
from paitune.results.storage import Location
from paitune.search import compaction
from paitune.search.compaction import compact, per_trial_files
from paitune.search.sink import remove_incomplete_trials

TABLES = ("trials", "epochs", "layers")


def _per_trial_dir(tmp_path, n_methods=3) -> tuple:
    """A results directory as a sweep writes it: one file per trial in each table."""
    spec = PlantedSpec(methods=("random", "snip", "synflow")[:n_methods], sparsities=(0.5, 0.9), seeds=3,
                       budgets=(4,), n_layers=3, failed_fraction=0.05, seed=0)  # fmt: skip
    tables = generate_tables(spec)
    root = tmp_path / "exp"
    ids = tables["trials"].column("trial_id").to_pylist()
    for name, table in tables.items():
        (root / name).mkdir(parents=True)
        for trial_id in ids:
            rows = table.filter(pc.equal(table["trial_id"], trial_id))
            pq.write_table(rows, root / name / f"{trial_id}.parquet")
    return root, set(ids)


def _content(root) -> dict[str, pd.DataFrame]:
    results = load_results(str(root))
    trials = results.trials.drop(columns="tix").sort_values("trial_id").reset_index(drop=True)
    key = results.trials.set_index("tix")["trial_id"]
    out = {"trials": trials}
    for name, order in (("epochs", "epoch"), ("layers", "layer")):
        frame = getattr(results, name)
        frame = frame.assign(trial_id=frame["tix"].map(key)).drop(columns="tix")
        out[name] = frame.sort_values(["trial_id", order]).reset_index(drop=True)
    assert results.duplicate_trials == 0 and not any(results.orphan_rows.values())
    return out


def _assert_same(a: dict, b: dict) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_like=True)


def test_compaction_keeps_every_row_once_in_a_few_files(tmp_path):
    root, ids = _per_trial_dir(tmp_path)
    before = _content(root)
    assert per_trial_files(root) == len(ids)

    done = compact(root, max_trials_per_file=20)
    assert done.trials == len(ids) and done.files == -(-len(ids) // 20)
    for name in TABLES:
        names = sorted(p.name for p in (root / name).iterdir())
        assert len(names) == done.files and all(n.startswith("compacted-") for n in names)
    assert written_trial_ids(root) == ids and per_trial_files(root) == 0
    _assert_same(before, _content(root))
    # Nothing left to merge: a second compaction writes nothing.
    assert compact(root).files == 0
    _assert_same(before, _content(root))


def test_trials_written_after_a_compaction_are_merged_by_the_next(tmp_path):
    root, ids = _per_trial_dir(tmp_path)
    later = sorted(ids)[:5]
    for name in TABLES:  # hold five trials back, as if they ended after the first compaction
        (tmp_path / "later" / name).mkdir(parents=True)
        for trial_id in later:
            (root / name / f"{trial_id}.parquet").rename(tmp_path / "later" / name / f"{trial_id}.parquet")
    compact(root)
    for name in TABLES:
        for trial_id in later:
            (tmp_path / "later" / name / f"{trial_id}.parquet").rename(root / name / f"{trial_id}.parquet")
    assert written_trial_ids(root) == ids and per_trial_files(root) == 5
    before = _content(root)
    assert compact(root).trials == 5
    _assert_same(before, _content(root))
    assert all(len(list((root / name).iterdir())) == 2 for name in TABLES)


def test_a_compaction_stopped_before_its_trials_file_is_ignored_then_cleared(tmp_path, monkeypatch):
    root, ids = _per_trial_dir(tmp_path)
    before = _content(root)
    real = compaction.write_table_atomic

    def stop_at_trials(table, folder, stem):
        if str(folder).endswith("trials"):
            raise OSError("killed")
        return real(table, folder, stem)

    monkeypatch.setattr(compaction, "write_table_atomic", stop_at_trials)
    with pytest.raises(OSError):
        compact(root)
    found = layout(root)
    assert found.unfinished["epochs"] and found.unfinished["layers"]  # written, not read
    assert written_trial_ids(root) == ids
    _assert_same(before, _content(root))
    remove_incomplete_trials(root)  # what a resumed sweep runs first
    assert not any(p.name.startswith("compacted-") for name in TABLES for p in (root / name).iterdir())
    _assert_same(before, _content(root))


def test_a_compaction_stopped_while_deleting_is_read_once_then_cleared(tmp_path, monkeypatch):
    root, ids = _per_trial_dir(tmp_path)
    before = _content(root)
    deleted = []
    real = Location.delete

    def stop_after_three(self, name):
        if len(deleted) == 3:
            raise OSError("killed")
        deleted.append(name)
        return real(self, name)

    monkeypatch.setattr(Location, "delete", stop_after_three)
    with pytest.raises(OSError):
        compact(root)
    monkeypatch.setattr(Location, "delete", real)
    found = layout(root)
    assert sum(len(v) for v in found.merged.values()) == 3 * len(ids) - 3  # merged, still on disk
    assert written_trial_ids(root) == ids
    _assert_same(before, _content(root))
    assert compact(root).trials == 0  # clears the merged files; nothing new to merge
    assert not any(found.merged[name][0] == p.name for name in TABLES for p in (root / name).iterdir())
    assert per_trial_files(root) == 0
    _assert_same(before, _content(root))


def test_compact_command(tmp_path, capsys):
    from paitune.cli import main

    root, ids = _per_trial_dir(tmp_path, n_methods=1)
    assert main(["compact", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{len(ids)} trials' files merged into 1 file(s) per table" in out
    assert per_trial_files(root) == 0 and written_trial_ids(root) == ids
    assert not (root / ".lock").exists()  # the lock it held is released
    assert main(["compact", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no trials/ table" in err


def test_compact_refuses_a_running_sweep(tmp_path, capsys):
    from paitune.cli import main
    from paitune.search.lock import SweepLock

    root, _ = _per_trial_dir(tmp_path, n_methods=1)
    lock = SweepLock(root, "exp", renew=False)
    try:
        assert main(["compact", str(root)]) == 2
        assert "is already running" in capsys.readouterr().err
        assert per_trial_files(root) > 0
    finally:
        lock.release()


def test_a_file_the_analysis_would_skip_is_never_merged(tmp_path, capsys):
    # A trials file cut short, and a Parquet file of another program: compacted, either would make
    # the analysis skip the whole compacted file with every good trial in it.
    import pandas as pd

    from paitune.analysis import load_results
    from paitune.cli import main

    root, ids = _per_trial_dir(tmp_path, n_methods=1)
    names = sorted(p.name for p in (root / "trials").glob("*.parquet"))
    cut = root / "trials" / names[0]
    cut.write_bytes(cut.read_bytes()[:100])
    pd.DataFrame({"a": [1]}).to_parquet(root / "trials" / "zzz-foreign.parquet")
    assert main(["compact", str(root)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("paitune compact: warning:")]
    assert len(warnings) == 2 and "not a readable Parquet file" in captured.err and "no schema_version" in captured.err
    assert f"{len(ids) - 1} trials' files merged" in captured.out
    assert cut.exists() and (root / "trials" / "zzz-foreign.parquet").exists()  # left as they were
    loaded = load_results(str(root))
    assert len(loaded.trials) == len(ids) - 1 and len(loaded.skipped) == 2  # the two files, nothing more
