"""Analysis at scale: ``paitune analyze`` on 100,000 trials x 30 epochs x 20 layers.

The results set is generated with planted effects (``tests/planted.py``, vectorized) into a temp
directory as Parquet that follows ``paitune.results.schema`` (``spec_for_size``: PaI methods
plus IMP and dense reference trials, allocations, controls including ``corrupt_labels``,
sparsities, lr values, and enough seeds to pass the trial count). No trial is stopped early, so every non-failed trial has all its epochs (1% failed,
1% diverged). The tables are split into ``--files`` Parquet files each.

The analysis runs as the CLI does, in a child process (``python -m paitune analyze DIR --out
REPORT``); its wall time and peak resident memory are measured (``os.wait4`` gives the child's own
rusage; ``ru_maxrss``, the same number ``getrusage(RUSAGE_CHILDREN)`` reports). Goal: under 60 s
and 4 GiB. ``--profile`` also runs it under cProfile and records the slowest functions.
"""

from __future__ import annotations

import importlib.util
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import bench_parser, report, set_threads, timed

NAME = "analysis_scale"
GOAL_SECONDS = 60.0
GOAL_BYTES = 4 * 2**30
REPO = Path(__file__).resolve().parent.parent
PLANTED = REPO / "tests" / "planted.py"


def _planted():
    """tests/planted.py, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("paitune_planted", PLANTED)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def planted_spec(trials: int, epochs: int, layers: int):
    """The planted spec of about ``trials`` trials, every one with its full curve."""
    planted = _planted()
    spec = planted.spec_for_size(trials, epochs=epochs, n_layers=layers)
    if trials < spec.n_trials // spec.seeds:
        # Smaller than one seed of the full grid (--quick): fewer allocations, controls and lrs.
        spec.allocations, spec.controls, spec.repeats, spec.seeds = spec.allocations[:2], ("none", "invert"), 1, 1
        spec.seeds = -(-trials // spec.n_trials)
    spec.stopped_fraction = 0.0  # full curves: the size the goal names
    return planted, spec


def generate(root: Path, trials: int, epochs: int, layers: int, files: int) -> tuple[Path, dict]:
    """Write the results set; returns its directory and the row counts."""
    planted, spec = planted_spec(trials, epochs, layers)
    out = planted.write_results(root, "scale", spec, files_per_table=files)
    import pyarrow.dataset as ds

    counts = {f"{t}_rows": ds.dataset(out / t).count_rows() for t in ("trials", "epochs", "layers")}
    counts["bytes_on_disk"] = sum(f.stat().st_size for f in out.rglob("*.parquet"))
    return out, counts


def _maxrss_bytes(rusage) -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    return int(rusage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


def run_child(command: list[str], log: Path) -> tuple[int, float, int]:
    """Run ``command``, output to ``log``; (exit status, wall seconds, peak RSS bytes of the child)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, rusage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait on it again
    return proc.returncode, seconds, _maxrss_bytes(rusage)


def analyze_command(results: Path, out: Path, extra: list[str], *prefix: str) -> list[str]:
    return [sys.executable, *prefix, "-m", "paitune", "analyze", str(results), "--out", str(out), *extra]


def profile(results: Path, work: Path, extra: list[str], top: int = 25) -> list[dict]:
    """Run the analysis under cProfile; the ``top`` functions by cumulative time."""
    stats_file = work / "analyze.prof"
    command = analyze_command(results, work / "report_profiled", extra, "-m", "cProfile", "-o", str(stats_file))
    status, _, _ = run_child(command, work / "profile.log")
    if status != 0:
        return [{"function": f"profiled run failed with exit status {status}", "cumulative_s": None}]
    stats = pstats.Stats(str(stats_file))
    rows = []
    for (filename, line, func), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({func})",
                "calls": calls,
                "own_s": own,
                "cumulative_s": cumulative,
            }
        )
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:top]


COLUMNS = [
    ("trials_rows", "trials", "d"),
    ("epochs_rows", "epoch rows", "d"),
    ("layers_rows", "layer rows", "d"),
    ("files_per_table", "files/table", "d"),
    ("generate_s", "generate s", ".1f"),
    ("analyze_s", "analyze s", ".1f"),
    ("peak_rss_gib", "peak RSS GiB", ".2f"),
    ("exit_status", "exit", "d"),
    ("goal_met", "goal", ""),
]


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--trials", type=int, default=None, help="trials to generate (default 100,000; 400 with --quick)"
    )
    parser.add_argument("--files", type=int, default=16, help="Parquet files per table (default 16)")
    parser.add_argument("--profile", action="store_true", help="also run the analysis under cProfile")
    parser.add_argument("--keep", type=Path, default=None, help="generate here and keep it (default: a temp dir)")
    parser.add_argument(
        "--n-boot", type=int, default=None, help="passed to paitune analyze (default: its own, 1000; 100 with --quick)"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)  # the analysis child does not use torch; recorded for uniform facts
    trials = args.trials or (400 if args.quick else 100_000)
    epochs, layers = (5, 4) if args.quick else (30, 20)
    n_boot = args.n_boot or (100 if args.quick else None)
    extra = ["--n-boot", str(n_boot)] if n_boot else []

    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (results, counts), generate_s = timed(generate, work, trials, epochs, layers, args.files)
        status, analyze_s, peak = run_child(analyze_command(results, work / "report", extra), work / "analyze.log")
        log_tail = (work / "analyze.log").read_text()[-2000:]
        top = profile(results, work, extra) if args.profile else None

    row = {
        **counts,
        "files_per_table": args.files,
        "generate_s": generate_s,
        "analyze_s": analyze_s,
        "peak_rss_bytes": peak,
        "peak_rss_gib": peak / 2**30,
        "exit_status": status,
        "goal_met": status == 0 and analyze_s < GOAL_SECONDS and peak < GOAL_BYTES,
    }
    summary = {
        "analyze_seconds": analyze_s,
        "peak_rss_gib": peak / 2**30,
        "goal_seconds": GOAL_SECONDS,
        "goal_gib": GOAL_BYTES / 2**30,
        "goal_met": row["goal_met"],
    }
    settings = {
        "trials_requested": trials,
        "epochs": epochs,
        "layers": layers,
        "files_per_table": args.files,
        "generator": "tests/planted.py spec_for_size, no early stops",
        "command": "python -m paitune analyze DIR --out REPORT " + " ".join(extra),
    }
    if status != 0:
        settings["analyze_log_tail"] = log_tail
        print(log_tail, file=sys.stderr)
    if top is not None:
        settings["profile_top_cumulative"] = top
        for r in top:
            print(f"{r['cumulative_s'] or 0:9.2f} s cumulative  {r['function']}")
    report(
        NAME,
        args,
        settings=settings,
        rows=[row],
        summary=summary,
        columns=COLUMNS,
        title=f"paitune analyze at scale ({trials:,} trials x {epochs} epochs x {layers} layers)",
    )
    return 0 if status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
