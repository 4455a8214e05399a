"""The driver-side Tune callback that turns trial results into the three Parquet tables.

It collects each trial's results as they arrive and, when the trial ends (finished, stopped by
the scheduler, diverged or failed), writes one file per table for it under ``DIR/NAME/{trials,
epochs,layers}/``, named by trial id. The epochs and layers files go first and the trials file
last, so a row in ``trials`` means the trial's other rows are on disk too. Its state (the
results of running trials) is saved with Tune's experiment checkpoint, so a resumed driver
still writes complete files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from ray.tune import Callback

from paitune.search.parquet_io import remove_stale_temporaries, write_table_atomic
from paitune.search.rows import TrialRecord, epoch_rows, layer_rows, trial_row
from paitune.search.searcher import trial_outcome


def _error_line(trial) -> str:
    """The last line of the trial's error trace (the exception type and message)."""
    text = None
    try:
        text = trial.get_error()
    except Exception:  # the error file may be on storage that is gone; the status still says failed
        text = None
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "trial failed (no error trace was saved)"


class ParquetSink(Callback):
    def __init__(self, root: str | Path, experiment: str, schema: pa.Schema, search_params: list[str]):
        self.root = Path(root)
        self.experiment = experiment
        self.schema = schema
        self.search_params = list(search_params)
        self.records: dict[str, TrialRecord] = {}
        self.written: list[str] = []
        for table in ("trials", "epochs", "layers"):
            remove_stale_temporaries(self.root / table)

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id not in self.records:
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, dict(trial.config))
        return self.records[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._record(trial).add_result(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        self.write(record, trial_outcome(record.last or trial.last_result, error=False), None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.write(self._record(trial), "failed", _error_line(trial))

    def write(self, record: TrialRecord, status: str, error: str | None) -> None:
        stem = record.trial_id
        write_table_atomic(epoch_rows(record, experiment=self.experiment), self.root / "epochs", stem)
        write_table_atomic(layer_rows(record, experiment=self.experiment), self.root / "layers", stem)
        row = trial_row(
            record, experiment=self.experiment, status=status, error=error, schema=self.schema,
            search_params=self.search_params,
        )  # fmt: skip
        write_table_atomic(row, self.root / "trials", stem)
        self.records.pop(record.trial_id, None)
        self.written.append(record.trial_id)

    def get_state(self) -> dict:
        return {"records": {k: r.to_state() for k, r in self.records.items()}}

    def set_state(self, state: dict) -> None:
        self.records = {k: TrialRecord.from_state(v) for k, v in (state or {}).get("records", {}).items()}
