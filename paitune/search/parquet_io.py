"""Atomic Parquet files: a reader sees a whole file or none, never a truncated one.

A file is written under a hidden temporary name in its final directory, flushed to disk, then
renamed over the final name (``os.replace`` is atomic within a filesystem). Readers of the table
directory (pandas, pyarrow datasets, DuckDB globs on ``*.parquet``) skip the hidden names. Files
are named by trial id, so writing a trial again replaces its file instead of adding a duplicate.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


def write_table_atomic(table: pa.Table, directory: str | Path, stem: str) -> Path:
    """Write ``table`` to ``directory/stem.parquet`` atomically; returns the final path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{stem}.parquet"
    tmp = directory / f"{TMP_PREFIX}{stem}-{uuid.uuid4().hex[:8]}.parquet"
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete temporaries a killed writer left behind (they are never visible to readers)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = list(directory.glob(f"{TMP_PREFIX}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
