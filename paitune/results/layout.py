"""Which files of a results directory hold each table's rows, each trial once.

A sweep writes one file per trial in each table (``trials/<trial_id>.parquet``, and the same name
under ``epochs/`` and ``layers/``; the trials file last, so a trial with a trials file has all its
rows). Thousands of small files make every read slow (about 1.5 ms a file on a local disk, a round
trip each on object storage), so ``paitune compact`` (and a sweep, at its end) merges them into
``compacted-<id>.parquet`` files, one per table with the same name, the trials file again last.

A compaction can stop anywhere (a kill, a full disk). Whatever it left, the rows are read once:

* a compacted file under ``epochs/`` or ``layers/`` without its trials file is not read (the
  compaction that wrote it did not finish; the per-trial files it merged are still there);
* a per-trial file whose trial is in a compacted trials file is not read (it was merged; the
  compaction stopped before deleting it).

``paitune.search.compaction`` writes the files and clears both leftovers. No Ray, no Optuna here.
"""

from __future__ import annotations

from dataclasses import dataclass

from paitune.results.storage import Location, locate, read_parquet_files

TABLES = ("trials", "epochs", "layers")
COMPACTED_PREFIX = "compacted-"
SUFFIX = ".parquet"


def is_compacted(name: str) -> bool:
    return name.startswith(COMPACTED_PREFIX)


def trial_id_of(name: str) -> str:
    """The trial id of a per-trial file's name."""
    return name.removesuffix(SUFFIX)


@dataclass(frozen=True)
class Layout:
    """The files to read per table (``files``) and what a finished compaction would remove
    (``unfinished``: compacted epochs/layers files without their trials file; ``merged``:
    per-trial files of trials a compacted trials file holds), per table."""

    files: dict[str, list[str]]
    compacted_ids: frozenset[str]
    unfinished: dict[str, list[str]]
    merged: dict[str, list[str]]

    @property
    def trial_ids(self) -> set[str]:
        """Every trial with a row in the trials table: all of its rows are written."""
        return _trial_ids(self.files["trials"], self.compacted_ids)


def _trial_ids(trials_files: list[str], compacted_ids: frozenset[str]) -> set[str]:
    return {trial_id_of(n) for n in trials_files if not is_compacted(n)} | compacted_ids


def compacted_trial_ids(trials: Location, names: list[str]) -> frozenset[str]:
    """The trial ids in the compacted trials files ``names`` of the ``trials`` folder."""
    if not names:
        return frozenset()
    table = read_parquet_files(trials, names, lambda schema: ["trial_id"])
    return frozenset(table.column("trial_id").to_pylist())


def written_trial_ids(root: str | Location) -> set[str]:
    """The trial ids with a row in the trials table under ``root`` (a path, URI or Location):
    the sink writes a trial's trials file last, so these trials have all their rows."""
    trials = locate(root).join("trials")
    names = trials.parquet_files()
    return _trial_ids(names, compacted_trial_ids(trials, [n for n in names if is_compacted(n)]))


def layout(root: str | Location) -> Layout:
    """The files of each table under ``root`` (a path, URI or Location) that hold its rows."""
    root = locate(root)
    found = {table: root.join(table).parquet_files() for table in TABLES}
    done = [n for n in found["trials"] if is_compacted(n)]
    ids = compacted_trial_ids(root.join("trials"), done)
    files, unfinished, merged = {}, {}, {}
    for table, names in found.items():
        parts = [n for n in names if is_compacted(n)]
        singles = [n for n in names if not is_compacted(n)]
        unfinished[table] = [n for n in parts if n not in done]
        merged[table] = [n for n in singles if trial_id_of(n) in ids]
        files[table] = [n for n in parts if n in done] + [n for n in singles if trial_id_of(n) not in ids]
    return Layout(files=files, compacted_ids=ids, unfinished=unfinished, merged=merged)
