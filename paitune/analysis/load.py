"""Reading result directories (``DIR/NAME`` with ``trials/``, ``epochs/``, ``layers/``) into pandas.

Only Parquet is read (pyarrow datasets); nothing is ever unpickled. Several directories can be
given at once (merged experiments): their tables are concatenated and every trial is keyed by
``(experiment, trial_id)``. Trials of one directory may carry different extra config columns
(conditional parameters such as ``iterations``), so the trials schema is unified over all files.

A broken file (cut short, not Parquet, another schema version) or a trial read twice is left out
and named in ``Results.skipped``; no usable trials file, or one trial id two sweeps share, is a
``PaituneError`` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from paitune.analysis.files import read_table
from paitune.errors import PaituneError
from paitune.results.layout import layout
from paitune.results.schema import EPOCHS, LAYERS, PROXY_PREFIX, TRIALS_FIXED
from paitune.results.storage import Location, locate
from paitune.spaces.context import CONTEXT_COLUMN, context_id

# Columns of the trials table that describe where and how a trial ran, not what it was: never
# treated as hyperparameters.
BOOKKEEPING_COLUMNS = frozenset(TRIALS_FIXED.names) - {
    "method",
    "sparsity",
    "allocation",
    "control",
    "model",
    "dataset",
    "seed",
    "max_epochs",
}


@dataclass(frozen=True)
class Results:
    """The three tables of one or more experiments.

    ``trials`` gains an integer column ``tix`` (row position) that ``epochs`` and ``layers``
    carry too, so joins never compare strings. Rows of ``epochs``/``layers`` whose trial is not in
    ``trials`` are dropped and counted in ``orphan_rows``.
    """

    trials: pd.DataFrame
    epochs: pd.DataFrame
    layers: pd.DataFrame
    sources: tuple[str, ...]
    duplicate_trials: int = 0
    orphan_rows: dict = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # one line per file or row left out, saying which and why

    @property
    def proxy_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(PROXY_PREFIX)]

    @property
    def extra_config_columns(self) -> list[str]:
        """Config columns beyond the fixed schema (lr, epochs, iterations, ...)."""
        return [
            c
            for c in self.trials.columns
            if c not in TRIALS_FIXED.names and not c.startswith(PROXY_PREFIX) and c != "tix"
        ]


def _default_contexts(table: pa.Table) -> pa.Array:
    """The context ids of a trials table written without a context column: the default context
    keys, the training budget read from the epochs column (max_epochs where it is missing)."""
    frame = table.select(
        [c for c in ("dataset", "model", "sparsity", "epochs", "max_epochs") if c in table.column_names]
    ).to_pandas()
    if "epochs" not in frame:
        frame["epochs"] = frame.get("max_epochs")
    return pa.array([context_id(row) for row in frame.to_dict("records")], pa.string())


def _read_trials(path: Location, names: list[str], skipped: list[str]) -> tuple[pa.Table, pa.Array]:
    """The trials table of ``path`` (a ``trials/`` folder; its files ``names``) and the file of each row."""
    read = read_table(path, with_files=True, names=names)
    skipped += read.skipped
    if read.table is None or len(read.table) == 0:
        if read.skipped:
            raise PaituneError(f"{path}: no usable trials file ({len(read.skipped)} skipped: {read.skipped[0]})")
        return pa.table({}), pa.array([], pa.string())
    table = read.table
    if CONTEXT_COLUMN not in table.column_names and len(table):
        table = table.append_column(CONTEXT_COLUMN, _default_contexts(table))
    missing = [n for n in TRIALS_FIXED.names if n not in table.column_names]
    if missing:
        raise PaituneError(
            f"{path} is not a paitune trials table: missing column(s) {', '.join(missing)}; "
            "point analyze at a results directory written by `paitune sweep`"
        )
    return table, read.files


def _read_fixed(path: Location, names: list[str], schema: pa.Schema, skipped: list[str]) -> pa.Table:
    read = read_table(path, lambda found: [n for n in schema.names if n in found.names], names=names)
    skipped += read.skipped
    if read.table is None:
        return schema.empty_table()
    table = read.table
    for name in schema.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
    return table.select(schema.names).cast(schema)


MAX_NAMED = 5  # trials read twice named one by one; the rest counted


def _clashes(trials: pa.Table, files: pa.Array, keys: pd.Series, skipped: list[str]) -> np.ndarray:
    """Rows whose (experiment, trial id) an earlier row has already: the same trial read twice
    (same config: the later row is dropped, with a warning) or a trial id two different sweeps
    share (different configs: nothing tells which rows are whose, so it is refused)."""
    duplicated = keys.duplicated(keep="first").to_numpy()
    if not duplicated.any():
        return duplicated
    hashes = trials["config_hash"].to_pandas()
    first, again = {}, []
    for i, key in enumerate(keys):
        if key not in first:
            first[key] = i
            continue
        j = first[key]
        experiment, trial_id = key.split("\x1f", 1)
        if hashes[i] != hashes[j]:
            raise PaituneError(
                f"trial {trial_id!r} of experiment {experiment!r} is in {files[j]} and in {files[i]} with different "
                "configs: these are tables of two different sweeps under one name; analyze them apart "
                "(or move one sweep's files out)"
            )
        again.append(f"{files[i]}: trial {trial_id!r} of experiment {experiment!r} again (as in {files[j]}); skipped")
    # A directory copied into another repeats every trial: a few lines say so, not thousands.
    skipped += again[:MAX_NAMED] + (
        [f"and {len(again) - MAX_NAMED} more trials read twice; skipped"] if len(again) > MAX_NAMED else []
    )
    return duplicated


def _trial_keys(table: pa.Table) -> pa.Array:
    # "\x1f" (unit separator) cannot appear in experiment names or trial ids typed by people.
    return pc.binary_join_element_wise(
        pc.cast(table["experiment"], pa.string()), pc.cast(table["trial_id"], pa.string()), "\x1f"
    )


def _attach_tix(table: pa.Table, keys: pa.Array) -> tuple[pd.DataFrame, int]:
    """Map each row to its trial's position; drop and count rows of unknown trials."""
    if len(table) == 0:
        frame = table.to_pandas()
        frame.insert(0, "tix", pd.Series(dtype=np.int64))
        return frame, 0
    index = pc.index_in(_trial_keys(table), value_set=keys)
    valid = pc.is_valid(index)
    orphans = len(table) - pc.sum(valid).as_py()
    table = table.filter(valid)
    index = index.filter(valid)
    # Keys are dictionary-heavy: drop the string columns before pandas sees them.
    frame = table.drop_columns(["experiment", "trial_id", "schema_version"]).to_pandas()
    frame.insert(0, "tix", index.to_numpy(zero_copy_only=False).astype(np.int64))
    return frame, int(orphans)


def load_results(*paths: str | os.PathLike) -> Results:
    """Read the result directories; raises PaituneError (one line) for a bad path."""
    if not paths:
        raise PaituneError("no results directory given; pass one or more DIR/NAME paths")
    resolved: list[Location] = []
    for raw in paths:
        path = locate(raw)
        try:
            found = path.exists() and path.join("trials").is_dir()
        except OSError as err:  # a URI whose storage cannot be reached
            raise PaituneError(f"results directory {str(raw)!r}: cannot read it: {str(err).splitlines()[0]}") from None
        if not path.exists():
            raise PaituneError(
                f"results directory {str(raw)!r} does not exist; pass a DIR/NAME written by `paitune sweep`"
            )
        if not found:
            raise PaituneError(
                f"{str(raw)!r} has no trials/ table; pass a DIR/NAME written by `paitune sweep` "
                "(it holds trials/, epochs/, layers/)"
            )
        if path.uri in [p.uri for p in resolved]:
            raise PaituneError(f"results directory {str(raw)!r} was given twice; pass each directory once")
        resolved.append(path)

    skipped: list[str] = []
    trial_tables, trial_files = [], []
    # Each table's files that hold its rows, each trial once (a compaction may have stopped part-way).
    files_of = {path.uri: layout(path).files for path in resolved}
    for path in resolved:
        table, files = _read_trials(path.join("trials"), files_of[path.uri]["trials"], skipped)
        if len(table) == 0:
            raise PaituneError(f"{str(path)!r} has no trials yet; wait for the sweep to finish a trial")
        trial_tables.append(table)
        trial_files.append(files)
    trials_table = pa.concat_tables(trial_tables, promote_options="permissive")

    trials = trials_table.to_pandas()
    keys_all = _trial_keys(trials_table).to_pandas()
    files = pa.concat_arrays(trial_files).to_pylist()
    duplicated = _clashes(trials_table, files, keys_all, skipped)
    n_duplicates = int(duplicated.sum())
    if n_duplicates:
        # The same trial read twice (e.g. a directory copied into another): keep its first row.
        trials = trials.loc[~duplicated]
        trials_table = trials_table.filter(pa.array(~duplicated))
    trials = trials.reset_index(drop=True)
    trials.insert(0, "tix", np.arange(len(trials), dtype=np.int64))
    keys = _trial_keys(trials_table)

    orphan_rows = {}
    frames = {}
    for name, schema in (("epochs", EPOCHS), ("layers", LAYERS)):
        tables = [_read_fixed(path.join(name), files_of[path.uri][name], schema, skipped) for path in resolved]
        frame, orphan_rows[name] = _attach_tix(pa.concat_tables(tables), keys)
        if n_duplicates:
            frame = frame.drop_duplicates(subset=["tix", "epoch" if name == "epochs" else "layer"])
        frames[name] = frame.reset_index(drop=True)

    return Results(
        trials=trials,
        epochs=frames["epochs"],
        layers=frames["layers"],
        sources=tuple(str(p) for p in resolved),
        duplicate_trials=n_duplicates,
        orphan_rows=orphan_rows,
        skipped=tuple(skipped),
    )
