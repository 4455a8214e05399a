"""Tune results of one trial -> rows of the trials, epochs and layers tables.

Every trial file of a sweep has the same columns (fixed by the space before the sweep starts), so
the tables read whole as one dataset: the fixed columns of ``paitune.results.schema``, then every
other trial config value, the searched allocation's raw parameters, and ``proxy_<name>`` columns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from paitune.config import TRIAL_OPTIONS, allocation_label, canonical_json, config_hash, trial_config
from paitune.results import schema as rs
from paitune.spaces.context import CONTEXT_COLUMN, DENSE_BASE_KEYS, context_id, reference_setting

# Column types of the trial config values that are not fixed columns of the trials table. Lists,
# paths and shapes are stored as text (names and numbers comma-separated, shapes like "3x32x32").
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def _column_value(kind: str, value: Any) -> Any:
    """A trial config value as its trials-table column holds it (``_ARROW_TYPES``, else text)."""
    if kind == "names":
        return ",".join(value)
    if kind == "shape":
        return "x".join(str(d) for d in value)
    if kind == "floats":
        return ",".join(repr(float(v)) for v in value)  # repr: round-trip exact
    return value


def config_column_types() -> dict[str, pa.DataType]:
    """Trial config key -> its column's type, for every key that is not a fixed column (a plug-in
    method's option keys included, once registered)."""
    return {
        name: _ARROW_TYPES.get(option.kind, pa.string())
        for name, option in TRIAL_OPTIONS.items()
        if name not in rs.TRIALS_FIXED.names
    }


# Keys of the trial function's reports (paitune.search.trainable writes them).
EPOCH_KEY = "epoch"
MAX_EPOCHS_KEY = "max_epochs"
STATUS_KEY = "pai_status"
EPOCH_METRICS = ("train_loss", "val_loss", "val_acc", "test_acc", "seconds")
LAYERS_KEY = "layers_json"
HISTORY_KEY = "history_json"
VERSIONS_KEY = "versions_json"
DIVERGED_KEY = "diverged_at"
# A trial whose config cannot be built (a PaituneError before training, e.g. an allocation that
# cannot meet the sparsity on this model) reports STATUS_KEY = schema.STATUS_FAILED and this reason.
ERROR_KEY = "pai_error"
FIRST_RESULT_KEYS = (
    "density_achieved", "params_kept", "params_total", "flops_dense", "flops_sparse", "collapsed",
    "mask_hash", "prune_seconds", "node", "device",
)  # fmt: skip
# The mask facts every report repeats: objectives may name them (paitune.spaces.schema.METRICS),
# and Tune hands a searcher only the last result.
REPEATED_FACTS = ("density_achieved", "params_kept", "flops_sparse")
# What every report carries; the first report after each start adds the prune-time facts, the
# layers, versions and proxies. Once the driver's callbacks have read a result, only these keys
# are worth keeping in Tune's per-trial state (paitune.search.lean_state).
REPORT_KEYS = frozenset(
    {EPOCH_KEY, MAX_EPOCHS_KEY, STATUS_KEY, HISTORY_KEY, DIVERGED_KEY, "config_hash", *REPEATED_FACTS, *EPOCH_METRICS}
)


DENSE_ACC_COLUMN = "dense_test_acc"  # test_acc of the same context's dense reference, when known


def record_context(tune_config: dict[str, Any], config: dict[str, Any]) -> str:
    """A trial's context id: the one the searcher put into its Tune config (the space's context
    keys), else the default context of its resolved trial config ``config``."""
    return tune_config.get(CONTEXT_COLUMN) or context_id(config)


def reference_key(config: dict[str, Any], context: str) -> str:
    """What a dense reference is the reference for, as one string: a trial config's dataset, model,
    budget and seed, and the part of its context the reference shares (``reference_setting``)."""
    return json.dumps([*(config[k] for k in DENSE_BASE_KEYS), reference_setting(context), config["seed"]])


def trials_schema(search_params: list[str], proxies: list[str]) -> pa.Schema:
    """The trials table's columns for a sweep with these raw search parameters and proxies."""
    fields = list(rs.TRIALS_FIXED) + [pa.field(DENSE_ACC_COLUMN, pa.float64())]
    fields += [pa.field(k, t) for k, t in config_column_types().items()]
    fields += [pa.field(p, pa.float64()) for p in search_params]
    fields += [pa.field(rs.PROXY_PREFIX + p, pa.float64()) for p in proxies]
    return pa.schema(fields)


def _clean(value: Any) -> Any:
    # NaN accuracy (a trial that diverged in its first epoch) is stored as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class TrialRecord:
    """What the driver has seen of one trial: its config, first-result facts and epochs."""

    trial_id: str
    config: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)

    def add_result(self, result: dict[str, Any]) -> None:
        if LAYERS_KEY in result:
            self.facts = {k: result[k] for k in (*FIRST_RESULT_KEYS, LAYERS_KEY, VERSIONS_KEY) if k in result}
            self.facts["proxies"] = {
                k[len(rs.PROXY_PREFIX) :]: v for k, v in result.items() if k.startswith(rs.PROXY_PREFIX)
            }
        # After a retry from a checkpoint, the first result carries the epochs run before it.
        for row in json.loads(result.get(HISTORY_KEY) or "[]"):
            self.epochs.setdefault(int(row["epoch"]), {m: row.get(m) for m in EPOCH_METRICS})
        epoch = result.get("epoch")
        if result.get("pai_status") != "diverged" and isinstance(epoch, int) and epoch >= 1:
            self.epochs[epoch] = {m: result.get(m) for m in EPOCH_METRICS}
        self.last = dict(result)

    def to_state(self) -> dict:
        return {"trial_id": self.trial_id, "config": self.config, "facts": self.facts,
                "epochs": {str(k): v for k, v in self.epochs.items()}, "last": self.last}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> TrialRecord:
        return cls(state["trial_id"], state["config"], state["facts"],
                   {int(k): v for k, v in state["epochs"].items()}, state["last"])  # fmt: skip


def _allocation_label(tune_config: dict[str, Any], search_params: list[str]) -> str:
    allocation = tune_config.get("allocation")
    if isinstance(allocation, dict) and any(p in tune_config for p in search_params):
        return "searched"  # maps the space's allocation search drew: one searched allocation
    return allocation_label(allocation)


def trial_row(
    record: TrialRecord,
    *,
    experiment: str,
    status: str,
    error: str | None,
    schema: pa.Schema,
    search_params: list[str],
    dense_test_acc: float | None = None,
) -> pa.Table:
    config = trial_config(record.config)
    facts = record.facts
    epochs = [record.epochs[e] for e in sorted(record.epochs)]
    last = epochs[-1] if epochs else {}
    accs = [e["val_acc"] for e in epochs if _clean(e.get("val_acc")) is not None]
    row: dict[str, Any] = {
        "schema_version": rs.SCHEMA_VERSION,
        "experiment": experiment,
        "trial_id": record.trial_id,
        "config_hash": config_hash(config),
        # The searcher puts the context id (the space's context keys) into the Tune config.
        "context": record_context(record.config, config),
        "status": status,
        "method": config["method"],
        "sparsity": config["sparsity"],
        "allocation": _allocation_label(record.config, search_params),
        "control": config["control"],
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "epochs_run": max(record.epochs) if record.epochs else 0,
        # reported by the trial: its epochs, or its rounds + 1 for IMP (one report per round)
        "max_epochs": int(record.last.get("max_epochs", config["epochs"])),
        "val_acc": _clean(last.get("val_acc")),
        "best_val_acc": max(accs) if accs else None,
        "test_acc": _clean(last.get("test_acc")),
        "density_achieved": facts.get("density_achieved"),
        "params_kept": facts.get("params_kept"),
        "params_total": facts.get("params_total"),
        "flops_dense": facts.get("flops_dense"),
        "flops_sparse": facts.get("flops_sparse"),
        "collapsed": facts.get("collapsed"),
        "mask_hash": facts.get("mask_hash"),
        "prune_seconds": facts.get("prune_seconds"),
        "train_seconds": float(sum(e.get("seconds") or 0.0 for e in epochs)),
        "node": facts.get("node"),
        "device": facts.get("device"),
        "error": error,
        "config_json": canonical_json(config),
        "versions": facts.get(VERSIONS_KEY),
        DENSE_ACC_COLUMN: _clean(dense_test_acc),
    }
    for key in config_column_types():
        row[key] = _column_value(TRIAL_OPTIONS[key].kind, config[key])
    for p in search_params:
        row[p] = record.config.get(p)
    for name, value in facts.get("proxies", {}).items():
        if rs.PROXY_PREFIX + name in schema.names:
            row[rs.PROXY_PREFIX + name] = _clean(value)
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names}], schema=schema)


def epoch_rows(record: TrialRecord, *, experiment: str) -> pa.Table:
    rows = [
        {"schema_version": rs.SCHEMA_VERSION, "experiment": experiment, "trial_id": record.trial_id, "epoch": e,
         **{m: _clean(record.epochs[e].get(m)) for m in EPOCH_METRICS}}
        for e in sorted(record.epochs)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=rs.EPOCHS)


def layer_rows(record: TrialRecord, *, experiment: str) -> pa.Table:
    layers = json.loads(record.facts.get(LAYERS_KEY) or "[]")
    rows = [
        {"schema_version": rs.SCHEMA_VERSION, "experiment": experiment, "trial_id": record.trial_id,
         "layer": layer["name"], "layer_index": i, "shape": "x".join(str(d) for d in layer["shape"]),
         "numel": layer["numel"], "density": layer["density"]}
        for i, layer in enumerate(layers)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=rs.LAYERS)
