"""The Parquet results schema: table names, columns, types and the schema version.

The writer (``paitune.search``) and the reader (``paitune.analysis``) both import this module, so
the two can never drift apart. A sweep's results live under ``DIR/NAME/`` as three tables, each a
directory of Parquet files (one file per finished trial, written atomically), readable whole with
``pandas.read_parquet(DIR/NAME/trials)``, pyarrow datasets or DuckDB.

The ``trials`` table has the fixed columns below plus one column per other resolved config value
(``lr``, ``epochs``, ``batch_size``, ...) and one ``proxy_<name>`` column per zero-cost proxy
computed at init; those extra columns are typed by their values (float64, int64, bool or string).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

TABLES = ("trials", "epochs", "layers")

# Trial status values.
STATUS_COMPLETED = "completed"  # ran its full budget
STATUS_STOPPED = "stopped"  # stopped early by the scheduler (ASHA)
STATUS_FAILED = "failed"  # raised an error
STATUS_DIVERGED = "diverged"  # loss became NaN/inf; the row holds the last good metrics
STATUSES = (STATUS_COMPLETED, STATUS_STOPPED, STATUS_FAILED, STATUS_DIVERGED)

PROXY_PREFIX = "proxy_"

TRIALS_FIXED = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("config_hash", pa.string()),
        ("context", pa.string()),  # paitune.spaces.context.context_id: choices are compared within it
        ("status", pa.string()),
        ("method", pa.string()),
        ("sparsity", pa.float64()),
        ("allocation", pa.string()),
        ("control", pa.string()),
        ("model", pa.string()),
        ("dataset", pa.string()),
        ("seed", pa.int64()),
        ("epochs_run", pa.int64()),
        ("max_epochs", pa.int64()),
        ("val_acc", pa.float64()),  # at the last epoch run
        ("best_val_acc", pa.float64()),
        ("test_acc", pa.float64()),  # at the last epoch run
        ("density_achieved", pa.float64()),
        ("params_kept", pa.int64()),
        ("params_total", pa.int64()),  # prunable weights before pruning
        ("flops_dense", pa.int64()),
        ("flops_sparse", pa.int64()),
        ("collapsed", pa.bool_()),
        ("mask_hash", pa.string()),
        ("prune_seconds", pa.float64()),
        ("train_seconds", pa.float64()),
        ("node", pa.string()),
        ("device", pa.string()),
        ("error", pa.string()),  # one line for failed trials, else null
        ("config_json", pa.string()),  # the fully resolved config, canonical JSON
        ("versions", pa.string()),  # JSON: paitune, torch, ray, optuna, python
    ]
)

EPOCHS = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("epoch", pa.int64()),  # 1-based
        ("train_loss", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_acc", pa.float64()),
        ("test_acc", pa.float64()),
        ("seconds", pa.float64()),
    ]
)

LAYERS = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("layer", pa.string()),  # parameter name, as model.named_parameters() gives it
        ("layer_index", pa.int64()),  # position from input to output
        ("shape", pa.string()),  # e.g. "64x3x3x3"
        ("numel", pa.int64()),
        ("density", pa.float64()),
    ]
)

SCHEMAS = {"trials": TRIALS_FIXED, "epochs": EPOCHS, "layers": LAYERS}
