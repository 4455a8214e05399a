"""Run every benchmark in bench/, one child process each: ``python -m bench.run_all [--quick]``.

A benchmark is any module ``bench/<name>.py`` other than ``common``, ``run_all`` and names that
start with an underscore; each takes the flags of ``bench.common.bench_parser`` (``--quick``,
``--threads``, ``--out``), which this runner passes on. Each runs in its own process so that one
benchmark's threads, memory and imports (Ray) cannot skew the next. The known ones run in the
order of ``ORDER`` (cheapest first), any others after them alphabetically. Exit status: 0 when
every benchmark exited 0, else 1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import bench_parser, format_table

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NOT_BENCHMARKS = {"common", "run_all"}
ORDER = ("masked_training", "scoring_cost", "analysis_scale")


def benchmarks() -> list[str]:
    """The benchmark module names found in bench/, in running order."""
    found = {p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args(argv)
    names = benchmarks()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(names)}")
        names = [n for n in names if n in args.only]
    passed = ["--threads", str(args.threads), "--out", str(args.out)] + (["--quick"] if args.quick else [])
    rows = []
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        start = time.perf_counter()
        status = subprocess.call([sys.executable, "-m", f"bench.{name}", *passed], cwd=REPO)
        rows.append(
            {
                "benchmark": name,
                "exit": status,
                "seconds": time.perf_counter() - start,
                "json": str(Path(args.out) / f"{name}.json") if status == 0 else "-",
            }
        )
    print()
    print(
        format_table(
            rows,
            [
                ("benchmark", "benchmark", ""),
                ("exit", "exit", "d"),
                ("seconds", "seconds", ".1f"),
                ("json", "results", ""),
            ],
            "bench.run_all",
        )
    )
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
