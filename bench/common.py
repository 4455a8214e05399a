"""Shared helpers for the benchmarks: CLI flags, threads, timing, machine facts, tables, JSON.

Every module in bench/ other than ``common`` and ``run_all`` is a benchmark (``bench.run_all``
finds them by file name) and follows one pattern, so the runner and the smoke test treat them alike:

    def main(argv=None) -> int:
        args = bench_parser(__doc__).parse_args(argv)      # --quick, --threads, --out
        set_threads(args.threads)
        rows = [...]                                       # one dict per table row
        report(NAME, args, settings={...}, rows=rows, summary={...}, columns=[...])
        return 0

``report`` prints the table and writes ``<out>/<NAME>.json`` with the keys in ``RESULT_KEYS``:
the benchmark name, whether it was a --quick run, the machine facts, the settings, the rows and a
summary (goals met or not). Timings in the rows are seconds; ratios are plain floats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_KEYS = ("benchmark", "quick", "machine", "settings", "rows", "summary")

# A table column: (row key, header, format spec such as ".3f"; "" prints the value as is).
Column = tuple[str, str, str]


def bench_parser(description: str | None) -> argparse.ArgumentParser:
    """The flags every benchmark takes: --quick (a seconds-long smoke run), --threads, --out."""
    first_line = (description or "").strip().splitlines()[:1]
    parser = argparse.ArgumentParser(description=first_line[0] if first_line else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads, fixed for the whole run (default 1: the machine is shared)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"folder for the JSON (default {RESULTS_DIR})")
    return parser


def set_threads(n: int) -> None:
    """Fix torch's intra-op thread count so that repeated timings are comparable."""
    import torch

    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    """``(fn(*args, **kwargs), wall seconds)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def machine_facts() -> dict:
    """What a reader needs to compare runs: CPUs, load, threads, library versions, accelerator."""
    import torch

    facts = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        # The load when the benchmark finished: on a shared machine it explains noisy timings.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return facts


def _jsonable(value):
    """NaN/inf become null (strict JSON); tuples become lists; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(name: str, payload: dict, out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` to ``out_dir/<name>.json`` (strict JSON, written whole then renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _cell(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec and isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[Column], title: str | None = None) -> str:
    """A plain-text table, numbers right-aligned, one line per row."""
    header = [h for _, h, _ in columns]
    body = [[_cell(row.get(key), spec) for key, _, spec in columns] for row in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *body)]
    numeric = [
        all(
            row.get(key) is None or (isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool))
            for row in rows
        )
        for key, _, _ in columns
    ]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(header), line(["-" * w for w in widths])]
    out += [line(cells) for cells in body]
    return "\n".join(out)


def report(
    name: str,
    args: argparse.Namespace,
    *,
    settings: dict,
    rows: list[dict],
    summary: dict,
    columns: Sequence[Column],
    title: str | None = None,
) -> Path:
    """Print the table and the summary, write the JSON; returns the JSON's path."""
    print(format_table(rows, columns, title or name))
    for key, value in summary.items():
        print(f"{key}: {_cell(value, '.3f' if isinstance(value, float) else '')}")
    path = write_json(
        name,
        {
            "benchmark": name,
            "quick": bool(args.quick),
            "machine": machine_facts(),
            "settings": settings,
            "rows": rows,
            "summary": summary,
        },
        args.out,
    )
    print(f"wrote {path}")
    sys.stdout.flush()
    return path
