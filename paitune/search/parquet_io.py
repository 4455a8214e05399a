"""Atomic Parquet files: a reader sees a whole file or none, never a truncated one.

A file is written under a hidden temporary name in its final directory, flushed to disk, then
renamed over the final name (``os.replace`` is atomic within a filesystem). Readers of the table
directory (pandas, pyarrow datasets, DuckDB globs on ``*.parquet``) skip the hidden names. Files
are named by trial id, so writing a trial again replaces its file instead of adding a duplicate.

On a remote location (``paitune.results.storage.Location`` from a URI) the same steps go through the
pyarrow filesystem: write the hidden temporary, then move it over the final name (a rename on
file systems; on object stores a server-side copy, after which the final object appears whole).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from paitune.results.storage import Location
from paitune.search.faults import write_fault

TMP_PREFIX = ".tmp-"


def write_table_atomic(table: pa.Table, directory: str | Path | Location, stem: str) -> Path | str:
    """Write ``table`` to ``directory/stem.parquet`` atomically; returns the final path."""
    return write_atomic(lambda handle: pq.write_table(table, handle), directory, f"{stem}.parquet")


def write_text_atomic(text: str, directory: str | Path | Location, filename: str) -> Path | str:
    """Write ``text`` (UTF-8) to ``directory/filename`` atomically; returns the final path."""
    data = text.encode("utf-8")
    return write_atomic(lambda handle: handle.write(data), directory, filename)


def write_atomic(write, directory: str | Path | Location, filename: str) -> Path | str:
    """``write(handle)`` into a hidden temporary beside ``directory/filename``, flushed, then
    renamed over it (moved, on a remote location); returns the final path."""
    if isinstance(directory, Location):
        if not directory.local:
            return _write_remote(write, directory, filename)
        directory = directory.local_path()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / filename
    tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{filename}"
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            write_fault()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _write_remote(write, directory: Location, filename: str) -> str:
    directory.fs.create_dir(directory.path, recursive=True)
    final = f"{directory.path}/{filename}"
    tmp = f"{directory.path}/{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{filename}"
    try:
        with directory.fs.open_output_stream(tmp) as stream:
            write(stream)
        directory.fs.move(tmp, final)
    except BaseException:
        directory.delete(tmp.rsplit("/", 1)[1])
        raise
    return final


def remove_stale_temporaries(directory: str | Path | Location) -> int:
    """Delete temporaries a killed writer left behind (they are never visible to readers)."""
    if isinstance(directory, Location):
        if not directory.local:
            stale = [name for name in directory.files() if name.startswith(TMP_PREFIX)]
            for name in stale:
                directory.delete(name)
            return len(stale)
        directory = directory.local_path()
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = list(directory.glob(f"{TMP_PREFIX}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
