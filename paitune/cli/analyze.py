"""``paitune analyze DIR/NAME [DIR/OTHER ...] [--out REPORT_DIR] [--json]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from paitune.errors import PaituneError

DEFAULT_OUT = "report"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "analyze",
        help="analyze sweep results: tables, statistics, plots, report.html / report.md, CSV tables, summary.json",
        description=(
            "Read one or more result directories (DIR/NAME with trials/, epochs/, layers/), print "
            "the key tables — accuracy with its gap to the dense model, the standard operating points "
            "(compression 2x to 32x, up to 1000x), rankings, sanity and corrupted-data controls, "
            "PaI vs IMP, proxies with their size bias — and write REPORT_DIR/report.html "
            "(self-contained apart from its CSV links) and report.md (findings, plots, tables), the plots as PNG, "
            "every table as REPORT_DIR/tables/NAME.csv and REPORT_DIR/summary.json (every number of the report)."
        ),
    )
    parser.add_argument(
        "results",
        nargs="+",
        metavar="DIR/NAME",
        help="result directories, local or URIs such as s3://bucket/results/NAME (several = merged)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="REPORT_DIR",
        help=f"where to write the report (default: DIR/NAME/{DEFAULT_OUT} of the first directory; ./{DEFAULT_OUT}-NAME for a URI)",
    )
    parser.add_argument("--json", action="store_true", help="print summary.json to stdout instead of the tables")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per CI (default 1000)")
    parser.add_argument(
        "--profile-sparsity",
        type=float,
        default=None,
        help="sparsity level for the layerwise profiles (default: the median level)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    # Imported here so `paitune --help` and the other commands do not pay for pandas/matplotlib.
    from paitune.analysis import analyze, load_results, terminal_text, write_report
    from paitune.analysis.summary import build_summary
    from paitune.results.storage import is_uri

    if args.n_boot < 100:
        raise PaituneError(f"--n-boot {args.n_boot} is too small for a 95% interval; use 100 or more")
    if args.profile_sparsity is not None and not 0.0 <= args.profile_sparsity < 1.0:
        raise PaituneError(
            f"--profile-sparsity {args.profile_sparsity} is outside [0, 1); pass a sparsity level of the sweep"
        )
    if args.out:
        out = Path(args.out)
    elif is_uri(args.results[0]):
        # The report is written locally: ./report-NAME for results read from a URI.
        out = Path(f"{DEFAULT_OUT}-{args.results[0].split('?')[0].rstrip('/').rsplit('/', 1)[-1]}")
    else:
        out = Path(args.results[0]) / DEFAULT_OUT
    _check_writable(out)
    # Everything is read and computed before anything is written: bad input leaves no files.
    results = load_results(*args.results)
    for line in results.skipped:  # files left out: the rest is analyzed, and this says which and why
        print(f"paitune analyze: warning: {line}", file=sys.stderr)
    if args.profile_sparsity is not None:
        _check_profile_level(results, args.profile_sparsity)
    analysis = analyze(results=results, n_boot=args.n_boot, profile_sparsity=args.profile_sparsity)
    try:
        written = write_report(analysis, out)
    except OSError as err:
        raise PaituneError(f"--out {out}: cannot write the report there ({err.strerror or err})") from None
    if args.json:
        json.dump(build_summary(analysis.tables), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(terminal_text(analysis))
        print(f"\nreport: {written['report']} (Markdown: {written['markdown'].name}, CSV: {written['tables'].name}/)")
        print(f"summary: {written['summary']}")
    return 0


def _check_writable(out: Path) -> None:
    """The report folder can be made and written: checked before the analysis runs (a report that
    cannot be written would otherwise cost the whole analysis first)."""
    if out.exists() and not out.is_dir():
        raise PaituneError(f"--out {out} is not a directory; pick a folder for the report")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PaituneError(f"--out {out}: {existing} is not a writable directory; pick a folder you can write to")


def _check_profile_level(results, sparsity: float) -> None:
    """--profile-sparsity names a level some trial with layer rows ran at (else its tables are empty)."""
    import numpy as np

    from paitune.analysis.layers import profile_levels

    levels = profile_levels(results)
    if not np.isclose(levels, sparsity).any():
        shown = ", ".join(f"{level:g}" for level in levels) or "none (no trial has layer rows)"
        raise PaituneError(f"--profile-sparsity {sparsity:g}: no trial ran at that level; the levels are {shown}")
