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
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from paitune.errors import PaituneError
from paitune.results.layout import COMPACTED_PREFIX, TABLES, Layout, is_compacted, layout
from paitune.results.schema import SCHEMA_VERSION
from paitune.results.storage import Location, locate, read_parquet_files
from paitune.search.parquet_io import remove_stale_temporaries, write_table_atomic

MAX_TRIALS_PER_FILE = 20_000  # a compacted layers file of 20 layers: 400,000 rows, a few MB
COMPACT_ORDER = ("epochs", "layers", "trials")  # trials last: it makes the compacted files count


@dataclass(frozen=True)
class Compaction:
    trials: int  # per-trial files merged, per table
    files: int  # compacted files written, per table
    left: tuple[str, ...] = ()  # one line per file left as it is (not this paitune's Parquet), and why


def compact(root: str | Path | Location, *, max_trials_per_file: int = MAX_TRIALS_PER_FILE) -> Compaction:
    """Merge the per-trial files of every trial written under ``root`` (DIR/NAME, a path or URI)."""
    root = locate(root)
    for table in TABLES:
        remove_stale_temporaries(root.join(table))
    found = clear_compaction_leftovers(root)
    singles = [n for n in found.files["trials"] if not is_compacted(n)]
    have = {table: set(found.files[table]) for table in TABLES}
    left: list[str] = []
    merged_trials = written = 0
    for start in range(0, len(singles), max_trials_per_file):
        chunk = singles[start : start + max_trials_per_file]  # a trial's files share its name
        rows = _chunk_rows(root, chunk, have)
        if rows is None:
            # A file the analysis would skip (cut short, not Parquet, another schema) is never
            # merged: in a compacted file it would take its neighbours' rows down with it. Only a
            # chunk that does not read whole is checked file by file; such a trial stays as it is.
            unsound: set[str] = set()
            for table in TABLES:
                for name, why in _unsound(root.join(table), [n for n in chunk if n in have[table]]):
                    unsound.add(name)
                    left.append(f"{root.join(table)}/{name}: {why}; left as it is")
            chunk = [n for n in chunk if n not in unsound]
            if not chunk:
                continue
            rows = _chunk_rows(root, chunk, have)
            if rows is None:
                raise PaituneError(f"{root}: its results files read one by one but do not merge; nothing compacted")
        stem = f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:12]}"
        for table in COMPACT_ORDER:  # trials last: it makes the compacted files count
            if rows[table] is not None:
                write_table_atomic(rows[table], root.join(table), stem)
        for table in TABLES:
            folder = root.join(table)
            for name in chunk:
                if name in have[table]:
                    folder.delete(name)
        merged_trials += len(chunk)
        written += 1
    return Compaction(trials=merged_trials, files=written, left=tuple(left))


def _chunk_rows(root: Location, chunk: list[str], have: dict[str, set[str]]) -> dict[str, pa.Table | None] | None:
    """Each table's rows of the chunk's per-trial files, read in one pass; None when some file
    is not a results file of this schema version (unreadable, or other rows)."""
    rows = {}
    for table in COMPACT_ORDER:
        try:
            read = read_parquet_files(root.join(table), [n for n in chunk if n in have[table]])
        except (pa.ArrowException, OSError):
            return None
        if read is not None:
            versions = read.column("schema_version") if "schema_version" in read.column_names else None
            if versions is None or versions.null_count or not pc.all(pc.equal(versions, SCHEMA_VERSION)).as_py():
                return None
        rows[table] = read
    return rows


def _unsound(folder: Location, names: list[str]) -> list[tuple[str, str]]:
    """(name, why) for each file of ``names`` that is not a results file of this schema version."""
    import pyarrow.parquet as pq

    out = []
    for name in names:
        try:
            with folder.fs.open_input_file(f"{folder.path}/{name}") as source:
                parquet = pq.ParquetFile(source)
                if "schema_version" not in parquet.schema_arrow.names:
                    out.append((name, "not a paitune results file (no schema_version column)"))
                    continue
                versions = set(parquet.read(columns=["schema_version"]).column(0).to_pylist())
        except (pa.ArrowException, OSError) as err:
            out.append((name, f"not a readable Parquet file ({str(err).splitlines()[0]})"))
            continue
        if versions - {SCHEMA_VERSION}:
            out.append((name, f"schema version {sorted(versions - {SCHEMA_VERSION})[0]}, not {SCHEMA_VERSION}"))
    return out


def clear_compaction_leftovers(root: Location) -> Layout:
    """Delete what a compaction that stopped part-way left: its compacted epochs/layers files
    without their trials file, and the per-trial files it had merged. Returns the layout left."""
    found = layout(root)
    for table in TABLES:
        for name in found.unfinished[table] + found.merged[table]:
            root.join(table).delete(name)
    nothing = {table: [] for table in TABLES}
    return replace(found, unfinished=nothing, merged=nothing)


def per_trial_files(root: str | Path | Location) -> int:
    """How many trials under ``root`` are still in per-trial files."""
    return sum(1 for n in locate(root).join("trials").parquet_files() if not is_compacted(n))
