"""Result files: reading a sweep's tables from one file per trial, and after ``paitune compact``.

A sweep's sink writes one Parquet file per trial in each of trials/, epochs/ and layers/; a reader
opens every one. The results set is planted (``tests/planted.py``, 30 epochs x 20 layers per trial,
as ``bench.analysis_scale``) and written the way the sink writes it, one file
per trial and table. Timed in this process: ``load_results`` (what ``paitune analyze`` reads
first) on the per-trial files, ``compact`` (``paitune.search.compaction``), and ``load_results``
on the compacted files; the loaded tables must be equal. Goal: after compaction, loading takes
at most a fifth of the per-trial time at 10,000 trials.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.analysis_scale import planted_spec
from bench.common import bench_parser, report, set_threads

NAME = "result_files"
GOAL_RATIO = 0.2


def write_per_trial(root: Path, trials: int, epochs: int, layers: int) -> tuple[Path, int]:
    """The planted results set under ``root/per_trial``, one file per trial and table."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    planted, spec = planted_spec(trials, epochs, layers)
    tables = planted.generate_tables(spec)
    out = root / "per_trial"
    for name, table in tables.items():
        folder = out / name
        folder.mkdir(parents=True)
        table = table.take(pc.sort_indices(table, [("trial_id", "ascending")]))
        ids = table.column("trial_id").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)]
        for start, end in zip(starts, ends, strict=True):
            pq.write_table(table.slice(start, end - start), folder / f"{ids[start]}.parquet")
    return out, len(tables["trials"])


def _load(root: Path) -> tuple[object, float]:
    from paitune.analysis import load_results

    start = time.perf_counter()
    results = load_results(str(root))
    return results, time.perf_counter() - start


def _same(a, b) -> bool:
    """The two loads hold the same rows (trials by id, epochs and layers by trial id and index)."""

    def tables(results):
        trial_of = results.trials.set_index("tix")["trial_id"]
        out = {"trials": results.trials.drop(columns="tix").sort_values("trial_id")}
        for name, order in (("epochs", "epoch"), ("layers", "layer")):
            frame = getattr(results, name)
            out[name] = (
                frame.assign(trial_id=frame["tix"].map(trial_of)).drop(columns="tix").sort_values(["trial_id", order])
            )
        return {name: frame.reset_index(drop=True) for name, frame in out.items()}

    left, right = tables(a), tables(b)
    return all(left[name].equals(right[name][left[name].columns]) for name in left)


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--trials", type=int, default=None, help="trials (default 10,000; 300 with --quick)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from paitune.search.compaction import compact

    trials = args.trials or (300 if args.quick else 10_000)
    epochs, layers = (5, 4) if args.quick else (30, 20)
    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        root, n = write_per_trial(Path(tmp), trials, epochs, layers)
        files = sum(1 for _ in root.rglob("*.parquet"))
        before, load_before = _load(root)
        start = time.perf_counter()
        done = compact(root)
        compact_s = time.perf_counter() - start
        after, load_after = _load(root)
        same = _same(before, after)
    ratio = load_after / load_before
    row = {"trials": n, "files_before": files, "files_after": 3 * done.files, "load_per_trial_s": load_before,
           "compact_s": compact_s, "load_compacted_s": load_after, "ratio": ratio, "tables_equal": same}  # fmt: skip
    summary = {"load_ratio": ratio, "tables_equal": same, "goal_met": same and ratio <= GOAL_RATIO}
    settings = {"epochs": epochs, "layers": layers, "timing": "load_results in this process, one run each"}
    columns = [("trials", "trials", "d"), ("files_before", "files", "d"), ("files_after", "after", "d"),
               ("load_per_trial_s", "load s", ".2f"), ("compact_s", "compact s", ".2f"),
               ("load_compacted_s", "load compacted s", ".2f"), ("ratio", "ratio", ".3f"),
               ("tables_equal", "equal", "")]  # fmt: skip
    report(NAME, args, settings=settings, rows=[row], summary=summary, columns=columns,
           title=f"Reading {n} trials: one file per trial and table, then compacted")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
