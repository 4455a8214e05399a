"""Where result tables live: a local directory or any filesystem pyarrow opens from a URI.

``locate("results")`` is a local directory; ``locate("s3://bucket/results")`` (or ``gs://``,
``hdfs://``, ``file://``, with pyarrow's query options such as ``?endpoint_override=...``) is a
remote one. The sweep's Parquet sink writes through a ``Location``, and the analysis reads
through one, so the same code serves a laptop and a cluster whose results go to object storage.
No Ray, no Optuna here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

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


def parquet_dataset(folder: Location, schema=None, names: list[str] | None = None):
    """The table of the ``*.parquet`` files directly in ``folder`` (hidden ones skipped: a writer's
    temporaries), or of the files ``names`` in it; None when it has none. Without ``schema``,
    every file's is inspected and merged: a conditional parameter's column may be in only some files."""
    import pyarrow.dataset as ds

    names = folder.parquet_files() if names is None else names
    if not names:
        return None
    factory = ds.FileSystemDatasetFactory(
        folder.fs, [f"{folder.path}/{name}" for name in names], ds.ParquetFileFormat(), ds.FileSystemFactoryOptions()
    )
    if schema is None:
        schema = factory.inspect(promote_options="permissive", fragments=None)
    return factory.finish(schema)


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
