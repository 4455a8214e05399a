"""The table printed when a sweep ends: trials per status and the best trials."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from paitune.results import schema as rs
from paitune.results.layout import layout
from paitune.results.storage import Location, locate, read_parquet_files
from paitune.spaces.compile import NO_CONTROL

SUMMARY_COLUMNS = ["trial_id", "status", "method", "sparsity", "allocation", "control", "seed", "epochs_run",
                   "val_acc", "test_acc", "density_achieved"]  # fmt: skip
TOP = 10


def read_trials(experiment_dir: str | Path | Location) -> pd.DataFrame:
    root = locate(experiment_dir)
    table = read_parquet_files(root.join("trials"), layout(root).files["trials"])
    if table is None:
        return pd.DataFrame(columns=rs.TRIALS_FIXED.names)
    return table.to_pandas()


def summary_text(trials: pd.DataFrame, experiment_dir: str | Path | Location) -> str:
    lines = [f"paitune sweep: {len(trials)} trials -> {experiment_dir}/{{trials,epochs,layers}}"]
    if trials.empty:
        return "\n".join(lines)
    counts = trials["status"].value_counts()
    lines.append("  " + ", ".join(f"{status} {int(counts.get(status, 0))}" for status in rs.STATUSES))
    failed = trials.loc[trials["status"] == rs.STATUS_FAILED, "error"].fillna("(no message)")
    if len(failed):
        lines.append(f"failed trials, by error (full traces in {experiment_dir}/errors/<trial_id>.txt):")
        lines += [f"  {n} x {message}" for message, n in failed.value_counts().items()]
    # The configs a user may pick: control arms are sanity checks, and one that ran on past its
    # stopped partner would rank there with epochs its config was not given.
    candidates = trials.loc[trials["control"] == NO_CONTROL] if "control" in trials.columns else trials
    best = candidates.sort_values(["val_acc", "epochs_run"], ascending=False, na_position="last").head(TOP)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        lines.append(f"top {min(TOP, len(best))} by val_acc (control arms left out):")
        lines.append(best[SUMMARY_COLUMNS].to_string(index=False))
    return "\n".join(lines)


def print_summary(experiment_dir: str | Path | Location, grid=None, *, stream=None) -> int:
    """Print the summary; exit status 1 when no trial succeeded (all failed), else 0."""
    stream = stream or sys.stdout
    trials = read_trials(experiment_dir)
    print(summary_text(trials, experiment_dir), file=stream)
    if trials.empty or (trials["status"] == rs.STATUS_FAILED).all():
        print("paitune sweep: no trial succeeded; see the error column of the trials table", file=stream)
        return 1
    return 0


def resume_command(plan) -> str:
    """The exact command line that continues the planned sweep."""
    import shlex

    options = plan.options
    out = str(plan.experiment_dir.parent) if plan.results.local else options.out
    args = ["paitune", "sweep", "--resume", "--out", out, "--name", options.name]
    if options.state_dir:
        args += ["--state-dir", options.state_dir]
    if options.address:
        args += ["--address", options.address]
    return shlex.join(args)


def print_stopped(plan, stops, *, stream=None) -> int:
    """One line for a sweep that stopped before its end (a signal, or results it could not
    write): why, what was written, and the command that continues it. Returns the exit status."""
    import signal

    stream = stream or sys.stderr
    try:
        written = len(read_trials(plan.results))
    except Exception:  # the tables' folder itself may be what failed; the line must still come
        written = None
    done = f"{written} trials written to {plan.results}" if written is not None else f"results in {plan.results}"
    why = f"stopped by {signal.Signals(stops.signal).name}" if stops.signal else f"error: {stops.reason}"
    print(f"paitune sweep: {why}; {done}; resume with: {resume_command(plan)}", file=stream, flush=True)
    return stops.exit_status
