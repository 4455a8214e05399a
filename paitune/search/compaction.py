"""Merge a results directory's per-trial files into a few large ones (``paitune compact``).

A sweep writes one file per trial and table; reading 100,000 trials then means opening 300,000
files. Compaction merges the per-trial files of the trials written so far into
``compacted-<id>.parquet`` files (``paitune.results.layout`` says which files readers take), at
most ``MAX_TRIALS_PER_FILE`` trials each, and deletes the per-trial files it merged. A sweep
compacts at its end once it holds ``--compact-min`` per-trial files (``SweepOptions``).

Order, so that a stop anywhere loses and duplicates nothing: the epochs and layers files first,
the trials file last (until it exists, readers ignore the other two, and the per-trial files are
still there); then the per-trial files are deleted (a reader ignores those whose trial a
compacted trials file holds). ``clear_compaction_leftovers`` (run here first and when a sweep
starts or resumes) deletes what a stopped compaction left. A trial's error trace
(``errors/<trial_id>.txt``) stays where it is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from paitune.results.layout import TABLES, is_compacted, layout, trial_id_of
from paitune.results.storage import Location, locate, read_parquet_files
from paitune.search.parquet_io import remove_stale_temporaries, write_table_atomic

MAX_TRIALS_PER_FILE = 20_000  # a compacted layers file of 20 layers: 400,000 rows, a few MB
COMPACT_ORDER = ("epochs", "layers", "trials")  # trials last: it makes the compacted files count


@dataclass(frozen=True)
class Compaction:
    trials: int  # per-trial files merged, per table
    files: int  # compacted files written, per table


def compact(root: str | Path | Location, *, max_trials_per_file: int = MAX_TRIALS_PER_FILE) -> Compaction:
    """Merge the per-trial files of every trial written under ``root`` (DIR/NAME, a path or URI)."""
    root = locate(root)
    for table in TABLES:
        remove_stale_temporaries(root.join(table))
    clear_compaction_leftovers(root)
    found = layout(root)
    singles = [n for n in found.files["trials"] if not is_compacted(n)]
    written = 0
    for start in range(0, len(singles), max_trials_per_file):
        chunk = [trial_id_of(n) for n in singles[start : start + max_trials_per_file]]
        stem = f"compacted-{uuid.uuid4().hex[:12]}"
        merged = {}
        for table in COMPACT_ORDER:
            folder = root.join(table)
            have = set(found.files[table])
            names = [f"{trial_id}.parquet" for trial_id in chunk if f"{trial_id}.parquet" in have]
            merged[table] = names
            rows = read_parquet_files(folder, names)
            if rows is not None:
                write_table_atomic(rows, folder, stem)
        for table in TABLES:
            folder = root.join(table)
            for name in merged[table]:
                folder.delete(name)
        written += 1
    return Compaction(trials=len(singles), files=written)


def clear_compaction_leftovers(root: Location) -> None:
    """Delete what a compaction that stopped part-way left: its compacted epochs/layers files
    without their trials file, and the per-trial files it had merged."""
    found = layout(root)
    for table in TABLES:
        for name in found.unfinished[table] + found.merged[table]:
            root.join(table).delete(name)


def per_trial_files(root: str | Path | Location) -> int:
    """How many trials under ``root`` are still in per-trial files."""
    return sum(1 for n in locate(root).join("trials").parquet_files() if not is_compacted(n))
