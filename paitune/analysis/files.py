"""Reading one results table (``trials/``, ``epochs/`` or ``layers/``) file by file when it must.

A table is read in one pass; only when that fails (a file cut short, or not Parquet at all) is
each file opened on its own, so a broken file is named and left out while the others are read.
Files of another schema version are named and left out too. Each file left out is reported as
one line (``path: what is wrong; skipped``); the caller decides whether what remains is usable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from paitune.errors import PaituneError
from paitune.results.schema import SCHEMA_VERSION
from paitune.results.storage import Location, read_parquet_files

FILE_COLUMN = "__filename"  # the file each row came from, when asked for


@dataclass
class TableRead:
    table: pa.Table | None  # None: no file to read, or none readable
    files: pa.Array | None = None  # the file of each row, when asked for
    skipped: list[str] = field(default_factory=list)  # one line per file left out
    found: int = 0  # visible .parquet files in the folder


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    # pyarrow names the file itself ("Could not open Parquet input source '<path>': ..."); the
    # caller's line names it already.
    return text.split("': ", 1)[1] if text.startswith("Could not open") and "': " in text else text


def _readable(folder: Location, names: list[str], skipped: list[str]) -> list[str]:
    good = []
    for name in names:
        try:
            with folder.fs.open_input_file(f"{folder.path}/{name}") as handle:
                pq.read_table(handle)
            good.append(name)
        except (pa.ArrowException, OSError) as err:
            skipped.append(f"{folder.join(name)}: not a readable Parquet file ({_first_line(err)}); skipped")
    return good


def read_table(
    folder: Location, columns=None, *, with_files: bool = False, names: list[str] | None = None
) -> TableRead:
    """The rows of every readable file of ``folder`` (or of its files ``names``) at the current
    schema version.

    ``columns``: a callable (the merged schema -> the column names to read), or None for all."""
    names = folder.parquet_files() if names is None else names
    read = TableRead(table=None, found=len(names))
    if not names:
        return read
    try:
        table, extra = _read(folder, names, columns, with_files)
    except (pa.ArrowException, OSError):
        names = _readable(folder, names, read.skipped)
        if not names:
            return read
        try:
            table, extra = _read(folder, names, columns, with_files)
        except (pa.ArrowException, OSError) as err:  # each file reads, but they do not merge
            raise PaituneError(f"{folder}: its files have schemas that do not merge: {_first_line(err)}") from None
    if FILE_COLUMN not in table.column_names and pc.any(_other_version(table)).as_py():
        table, extra = _read(folder, names, columns, True)  # the files are named only when one is off
    table, files = _current_version(table, extra, read.skipped)
    read.table = table if len(table) or not read.skipped else None
    read.files = files if with_files else None
    return read


def _read(folder: Location, names: list[str], columns, files: bool) -> tuple[pa.Table, list[str]]:
    def chosen(schema: pa.Schema) -> list[str]:
        wanted = list(schema.names) if columns is None else list(columns(schema))
        # The schema version is read to check it, also where the caller does not ask for it.
        return wanted + (
            ["schema_version"] if "schema_version" in schema.names and "schema_version" not in wanted else []
        )

    table = read_parquet_files(folder, names, chosen, file_column=FILE_COLUMN if files else None)
    asked = list(table.column_names) if columns is None else list(columns(table.schema))
    extra = ["schema_version"] if "schema_version" in table.column_names and "schema_version" not in asked else []
    return table, extra


def _versions(table: pa.Table):
    return table["schema_version"] if "schema_version" in table.column_names else pa.nulls(len(table), pa.int32())


def _other_version(table: pa.Table):
    return pc.fill_null(pc.not_equal(_versions(table), SCHEMA_VERSION), True)


def _current_version(table: pa.Table, extra: list[str], skipped: list[str]) -> tuple[pa.Table, pa.Array | None]:
    """Drop (and report) the files whose rows are of another schema version, or of none."""
    other = _other_version(table)
    if pc.any(other).as_py():
        versions = _versions(table)
        for name, version in sorted(set(zip(table[FILE_COLUMN].filter(other).to_pylist(),
                                            versions.filter(other).to_pylist())), key=str):  # fmt: skip
            what = f"schema version {version}" if version is not None else "no schema_version column"
            skipped.append(
                f"{name}: {what}, this paitune reads version {SCHEMA_VERSION}; skipped "
                "(analyze it with the paitune that wrote it)"
            )
        table = table.filter(pc.invert(other))
    files = table[FILE_COLUMN].combine_chunks() if FILE_COLUMN in table.column_names else None
    return table.drop_columns([c for c in (FILE_COLUMN, *extra) if c in table.column_names]), files
