"""``paitune compact DIR/NAME``: merge a sweep's per-trial result files into a few large ones."""

from __future__ import annotations

import argparse
import sys
import time

from paitune.errors import PaituneError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compact",
        help="merge a sweep's per-trial result files into a few large ones (faster to read)",
        description=(
            "A sweep writes one file per trial in trials/, epochs/ and layers/; reading many thousands of "
            "them is slow, on object storage most of all. This merges the files of every trial written so "
            "far into compacted-<id>.parquet files (a sweep does it at its end once it holds --compact-min "
            "trials). Safe to stop at any point: the rows are read once whatever it left, and the next "
            "compaction or sweep clears the rest. A local DIR/NAME is locked meanwhile (a running sweep "
            "refuses it); on a URI, run it while no sweep writes there."
        ),
    )
    parser.add_argument("results", metavar="DIR/NAME", help="a result directory, local or a URI")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from paitune.results.storage import locate
    from paitune.search.compaction import compact

    root = locate(args.results)
    if not root.join("trials").is_dir():
        raise PaituneError(f"{args.results!r} has no trials/ table; pass a DIR/NAME written by `paitune sweep`")
    lock = None
    if root.local:
        from paitune.search.lock import SweepLock

        lock = SweepLock(root.local_path(), root.local_path().name, renew=False)
    try:
        start = time.perf_counter()
        done = compact(root)
    finally:
        if lock is not None:
            lock.release()
    for line in done.left:
        print(f"paitune compact: warning: {line}", file=sys.stderr)
    print(
        f"paitune compact: {done.trials} trials' files merged into {done.files} file(s) per table "
        f"in {time.perf_counter() - start:.1f} s -> {root}"
    )
    return 0
