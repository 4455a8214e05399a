"""Trial accounting and accuracy vs sparsity.

"Final accuracy" in these descriptive tables is ``test_acc`` of **completed** trials (those that
ran their full budget), and a gap to dense is that accuracy's, paired by seed with the dense
model's final accuracy; stopped (ASHA), failed and diverged trials are counted beside every
average, never dropped silently. Under ASHA the survivors of a cell are its luckier trials, so
these tables describe and never decide: comparisons between trials (rankings, sanity, IMP,
proxies) use the accuracy at each context's common epoch or the last epoch both trials of a pair
reached, which stopped trials have too (``paitune.analysis.common``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.common import pair_completed
from paitune.analysis.levels import compression_ratio
from paitune.analysis.load import Results
from paitune.analysis.reference import (
    DENSE_METHOD,
    NO_DENSE,
    SETTING,
    final_gaps,
    seed_mean_ci,
    with_setting,
)
from paitune.analysis.stats import MIN_RUNS_CI, N_BOOT, SEED
from paitune.results.schema import STATUS_COMPLETED, STATUS_STOPPED, STATUSES

# A cell of the descriptive tables: the context (its values beyond dataset, model, budget and
# sparsity in ``setting``) and the choices; trials of one seed differing in anything else (a
# searched lr, say) are averaged.
CELL_COLUMNS = ["dataset", "model", "max_epochs", SETTING, "method", "allocation", "control", "sparsity"]


def completed_trials(results: Results) -> pd.DataFrame:
    """Completed trials with a final accuracy (the rows every accuracy statistic uses), with their
    ``setting`` (``paitune.analysis.reference.with_setting``). A control arm counts where its pair
    ran the budget: its unmodified partner completed too (``common.pair_completed``)."""
    trials = with_setting(results.trials)
    return trials.loc[pair_completed(results) & trials["test_acc"].notna().to_numpy()]


def completed_methods(results: Results) -> pd.DataFrame:
    """Completed trials of the methods that compete: the dense reference left out."""
    done = completed_trials(results)
    return done.loc[done["method"] != DENSE_METHOD]


def trial_counts(results: Results) -> pd.DataFrame:
    """Trials by experiment and status: {experiment, status, n}; every status listed, even at 0."""
    counts = results.trials.groupby(["experiment", "status"], observed=True).size()
    experiments = sorted(results.trials["experiment"].unique())
    statuses = list(STATUSES) + sorted(set(results.trials["status"].unique()) - set(STATUSES))
    index = pd.MultiIndex.from_product([experiments, statuses], names=["experiment", "status"])
    return counts.reindex(index, fill_value=0).rename("n").reset_index()


def status_by_choice(results: Results) -> pd.DataFrame:
    """Per method x allocation x control: how many trials ended in each status."""
    trials = results.trials
    table = pd.crosstab([trials["method"], trials["allocation"], trials["control"]], trials["status"])
    for status in STATUSES:
        if status not in table.columns:
            table[status] = 0
    table = table[list(STATUSES) + [c for c in table.columns if c not in STATUSES]]
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.reset_index()


def accuracy_vs_sparsity(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Final accuracy per (dataset, model, budget, setting, method, allocation, control, sparsity).

    Trials of one seed in a cell (e.g. several learning rates) are averaged first, so the seed is
    the unit: ``n`` is the number of seeds, ``n_trials`` the completed trials behind them, and
    ``ci_low``/``ci_high`` a Student-t 95% interval over the seeds (``paitune.analysis.reference.
    seed_mean_ci``; ``n_boot`` and ``seed`` are unused), null when ``n`` < 2 (``note`` =
    "too_few_runs").
    Stopped/failed/diverged trials of the cell are counted in ``n_stopped``/``n_failed``/``n_diverged`` (an arm
    that ran the budget after its partner was stopped in ``n_stopped``, with its pair).

    Beside sparsity: ``compression`` = 1 / (1 - sparsity). Beside the accuracy: its gap to the
    dense reference of the same context, the same completed trials' final accuracies paired by
    seed with the dense model's (``paitune.analysis.reference.final_gaps``; mean - dense_mean
    where every seed has a reference): ``gap`` (mean over seeds of accuracy - dense accuracy),
    ``gap_ci_low``/``gap_ci_high`` (its Student-t 95% interval over the paired seeds),
    ``n_gap`` (seeds with a reference), ``dense_mean``; ``gap_note`` = "no_dense_reference" when
    no seed of the cell has one (gap null), "too_few_runs" when one seed has.
    """
    done = completed_trials(results)
    per_seed = (
        done.groupby(CELL_COLUMNS + ["seed"], dropna=False, observed=True)
        .agg(acc=("test_acc", "mean"), trials=("test_acc", "size"))
        .reset_index()
    )
    table = seed_mean_ci(per_seed, CELL_COLUMNS, "acc")
    n_trials = per_seed.groupby(CELL_COLUMNS, dropna=False, observed=True)["trials"].sum()
    table = table.merge(n_trials.rename("n_trials").reset_index(), on=CELL_COLUMNS, how="left")
    # The gap of this mean: the same completed trials' final accuracies against the dense
    # model's, paired by seed.
    gap_rows = final_gaps(results)
    gap_seed = (
        gap_rows.groupby(CELL_COLUMNS + ["seed"], dropna=False, observed=True)
        .agg(gap=("gap", "mean"), dense_acc=("dense_acc", "mean"))
        .reset_index()
    )
    gaps = seed_mean_ci(gap_seed, CELL_COLUMNS, "gap").rename(
        columns={"n": "n_gap", "mean": "gap", "ci_low": "gap_ci_low", "ci_high": "gap_ci_high"}
    )
    paired = gap_seed.loc[gap_seed["gap"].notna()]
    dense_mean = paired.groupby(CELL_COLUMNS, dropna=False, observed=True)["dense_acc"].mean()
    gaps = gaps.merge(dense_mean.rename("dense_mean").reset_index(), on=CELL_COLUMNS, how="left")
    table = table.merge(gaps, on=CELL_COLUMNS, how="left")

    # Cells that have only non-completed trials still appear (with n = 0), so nothing vanishes. An
    # arm that ran the budget after its partner was stopped counts with its pair: stopped.
    trials = with_setting(results.trials)
    status = trials["status"].where(pair_completed(results) | (trials["status"] != STATUS_COMPLETED).to_numpy(),
                                    STATUS_STOPPED)  # fmt: skip
    other = trials.assign(status=status).loc[status != STATUS_COMPLETED, CELL_COLUMNS + ["status"]]
    others = (
        other.groupby(CELL_COLUMNS + ["status"], dropna=False, observed=True)
        .size()
        .unstack("status", fill_value=0)
        .reindex(columns=["stopped", "failed", "diverged"], fill_value=0)
    )
    others.columns = ["n_stopped", "n_failed", "n_diverged"]
    if len(others):
        table = table.merge(others.reset_index(), on=CELL_COLUMNS, how="outer")
    else:
        table = table.assign(n_stopped=0, n_failed=0, n_diverged=0)
    for column in ("n", "n_trials", "n_stopped", "n_failed", "n_diverged", "n_gap"):
        table[column] = table[column].fillna(0).astype("int64")
    table["note"] = (table["n"] < MIN_RUNS_CI).map({True: "too_few_runs", False: ""})
    table["gap_note"] = np.select([table["n_gap"] == 0, table["n_gap"] < MIN_RUNS_CI], [NO_DENSE, "too_few_runs"], "")
    table["compression"] = compression_ratio(table["sparsity"])
    columns = [
        "method",
        "allocation",
        "control",
        "sparsity",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "dataset",
        "model",
        "max_epochs",
        SETTING,
        "n_trials",
        "n_stopped",
        "n_failed",
        "n_diverged",
        "note",
        "compression",
        "dense_mean",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
        "n_gap",
        "gap_note",
    ]
    return table[columns].sort_values(CELL_COLUMNS).reset_index(drop=True)
