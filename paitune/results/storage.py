"""Where result tables live: a local directory or any filesystem pyarrow opens from a URI.

``locate("results")`` is a local directory; ``locate("s3://bucket/results")`` (or ``gs://``,
``hdfs://``, ``file://``, with pyarrow's query options such as ``?endpoint_override=...``) is a
remote one. The sweep's Parquet sink writes through a ``Location``, and the analysis reads
through one, so the same code serves a laptop and a cluster whose results go to object storage.
No Ray, no Optuna here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from paitune.errors import PaituneError


def is_uri(where: str | Path) -> bool:
    return "://" in str(where)


@dataclass(frozen=True)
class Location:
    """A directory on a pyarrow filesystem. ``uri`` is how it is shown to people."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        """Given as a plain path. A ``file://`` URI is not "local" here: it goes through the same
        filesystem calls as an object store, which is how the tests exercise that code."""
        return not is_uri(self.uri)

    def join(self, *parts: str) -> Location:
        uri = self.uri.split("?", 1)
        joined = posixpath.join(uri[0], *parts) + (f"?{uri[1]}" if len(uri) > 1 else "")
        return Location(self.fs, posixpath.join(self.path, *parts), joined)

    def __str__(self) -> str:
        # Shown to people without the URI's options (endpoints, flags): scheme and path only.
        return self.uri.split("?", 1)[0]

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def files(self, suffix: str = "") -> list[str]:
        """Base names of the files directly inside (none when the directory does not exist)."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix))

    def parquet_files(self) -> list[str]:
        """The visible ``*.parquet`` files directly inside: hidden names (a writer's temporaries,
        ``.`` or ``_`` first) are skipped, as pandas, pyarrow and DuckDB globs skip them."""
        return [name for name in self.files(".parquet") if not name.startswith((".", "_"))]

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(posixpath.join(self.path, name))
        except FileNotFoundError:
            pass

    def local_path(self) -> Path:
        if not self.local:
            raise ValueError(f"{self.uri} is not on the local filesystem")
        return Path(self.path)


# Files read at a time: each file's rows are combined into one table per batch, so a table of many
# one-row files (a trial's row is a file) holds a few chunks, not one per file.
READ_BATCH = 128
READ_THREADS = 4  # files open at once (object stores are latency-bound)
SMALL_ROWS = 1000  # rows per file, on average, below which a batch's files are combined into one chunk


def read_parquet_files(
    folder: Location,
    names: list[str] | None = None,
    columns: Callable[[pa.Schema], list[str]] | None = None,
    *,
    file_column: str | None = None,
) -> pa.Table | None:
    """The rows of the ``*.parquet`` files directly in ``folder`` (hidden ones skipped: a writer's
    temporaries), or of the files ``names`` in it, in that order; None when there is none.

    Files may differ in columns (a conditional parameter's column is in some only) and in types
    that widen (int to float): the table has the union, missing values null. ``columns``: the
    columns to read, given each file's schema. ``file_column``: a column naming each row's file.

    Read file by file, a batch at a time, and combined per batch: a dataset scan over thousands of
    small files keeps every file's metadata and chunks (about 240 KB of memory per trial file
    of 74 columns), this about 20 KB. A file that cannot be read raises pyarrow's error.
    """
    import pyarrow.parquet as pq

    names = folder.parquet_files() if names is None else names
    if not names:
        return None

    def read(name: str) -> pa.Table:
        path = f"{folder.path}/{name}"
        with folder.fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            table = parquet.read(columns=None if columns is None else columns(parquet.schema_arrow))
        if file_column is not None:
            table = table.append_column(file_column, pa.array([path] * len(table), pa.string()))
        return table

    batches = []
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for start in range(0, len(names), READ_BATCH):
            tables = list(pool.map(read, names[start : start + READ_BATCH]))
            batch = pa.concat_tables(tables, promote_options="permissive")
            # Small files' rows become one chunk; large files are chunks enough (copying them
            # into one would double the memory they take).
            batches.append(batch.combine_chunks() if batch.num_rows <= SMALL_ROWS * len(tables) else batch)
    return pa.concat_tables(batches, promote_options="permissive")


def locate(where: str | Path | Location) -> Location:
    """The Location of a local path or a URI (a Location is returned as it is); a URI pyarrow
    cannot open raises PaituneError."""
    if isinstance(where, Location):
        return where
    text = str(where)
    if not is_uri(text):
        path = Path(text).expanduser().resolve()
        return Location(pafs.LocalFileSystem(), str(path), str(path))
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except Exception as err:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PaituneError(f"{text}: pyarrow cannot open this location: {first}") from None
    return Location(fs, path.rstrip("/") or "/", text.rstrip("/"))
