"""Standard operating points (ShrinkBench, Blalock et al. 2020): accuracy at fixed compression ratios.

The literature's tables report accuracy at compression ratios 2, 4, 8, 16, 32 (and up to 1000 for
extreme-sparsity studies). Ratio r is sparsity 1 - 1/r; a trial counts for r when its compression
ratio 1 / (1 - sparsity) lies within RATIO_TOLERANCE (relative) of r, so a sweep at sparsity 0.97
(ratio 33.3) lines up with 32 but one at 0.9 (ratio 10) with none. Control ``none``, completed
trials; per dataset x model x budget x setting (``paitune.analysis.reference``) x method x allocation: mean over seeds (trials of one seed
averaged first), Student-t 95% interval over seeds, ``n`` seeds, and the gap to the dense reference
paired by seed with its t-interval over the paired seeds (``paitune.analysis.reference``;
``n_boot`` and ``seed`` are unused).

Ratios 2 to 32 always get a row per method x allocation (``n`` = 0 and note "not_swept" where the
sweep has no trial near them, "no_completed_trials" where every trial near them stopped, failed or
diverged, so a missing point is visible, not silently absent); ratios 64 to 1000 appear only for
datasets x models whose sweep reached them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.accuracy import completed_methods
from paitune.analysis.levels import compression_ratio
from paitune.analysis.load import Results
from paitune.analysis.reference import (
    NO_DENSE,
    SETTING,
    final_gaps,
    seed_mean_ci,
    with_setting,
    without_dense,
)
from paitune.analysis.stats import MIN_RUNS_CI, N_BOOT, SEED

CORE_RATIOS = (2, 4, 8, 16, 32)
EXTREME_RATIOS = (64, 128, 256, 512, 1000)
RATIOS = CORE_RATIOS + EXTREME_RATIOS
RATIO_TOLERANCE = 0.05
KEYS = ["dataset", "model", "max_epochs", SETTING, "method", "allocation"]


def match_ratio(sparsity, ratios=RATIOS, tolerance: float = RATIO_TOLERANCE) -> np.ndarray:
    """The standard ratio each sparsity matches (nearest in log ratio, within ``tolerance``), else NaN."""
    ratio = compression_ratio(sparsity)
    grid = np.asarray(ratios, dtype=np.float64)
    finite = np.isfinite(ratio) & (ratio > 0)
    log_ratio = np.log(np.where(finite, ratio, 1.0))
    distance = np.abs(log_ratio[:, None] - np.log(grid)[None, :])
    nearest = distance.argmin(axis=1)
    close = np.abs(ratio / grid[nearest] - 1.0) <= tolerance
    return np.where(finite & close, grid[nearest], np.nan)


def operating_points(
    results: Results, *, n_boot: int = N_BOOT, seed: int = SEED, tolerance: float = RATIO_TOLERANCE
) -> pd.DataFrame:
    """{dataset, model, max_epochs, setting, method, allocation, ratio, target_sparsity, sparsity_mean, n,
    mean, ci_low, ci_high, n_trials, dense_mean, gap, gap_ci_low, gap_ci_high, n_gap, note}."""
    columns = KEYS + [
        "ratio",
        "target_sparsity",
        "sparsity_mean",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "n_trials",
        "dense_mean",
        "gap",
        "gap_ci_low",
        "gap_ci_high",
        "n_gap",
        "note",
    ]
    done = completed_methods(results)
    done = done.loc[done["control"] == "none"]
    raw = done["sparsity_raw"] if "sparsity_raw" in done.columns else done["sparsity"]
    ratio = match_ratio(raw.to_numpy(dtype=np.float64), tolerance=tolerance)
    done = done.assign(ratio=ratio, raw_sparsity=raw.to_numpy(dtype=np.float64))
    matched = done.loc[np.isfinite(done["ratio"])]
    cell = KEYS + ["ratio"]
    per_seed = (
        matched.groupby(cell + ["seed"], observed=True)
        .agg(acc=("test_acc", "mean"), trials=("test_acc", "size"), sparsity=("raw_sparsity", "mean"))
        .reset_index()
    )
    table = seed_mean_ci(per_seed, cell, "acc")
    # The gap of this mean: the same completed trials' final accuracies against the dense model's.
    gap_rows = final_gaps(results)
    gap_rows = gap_rows.loc[(gap_rows["control"] == "none") & (gap_rows["method"] != "dense")]
    trials = results.trials
    gap_raw = (trials["sparsity_raw"] if "sparsity_raw" in trials.columns else trials["sparsity"]).to_numpy(
        dtype=np.float64
    )[gap_rows["tix"].to_numpy()]
    gap_rows = gap_rows.assign(ratio=match_ratio(gap_raw, tolerance=tolerance))
    gap_seed = (
        gap_rows.loc[np.isfinite(gap_rows["ratio"])]
        .groupby(cell + ["seed"], observed=True)
        .agg(gap=("gap", "mean"), dense_acc=("dense_acc", "mean"))
        .reset_index()
    )
    gaps = seed_mean_ci(gap_seed, cell, "gap").rename(
        columns={"n": "n_gap", "mean": "gap", "ci_low": "gap_ci_low", "ci_high": "gap_ci_high"}
    )
    extra = (
        per_seed.groupby(cell, observed=True)
        .agg(n_trials=("trials", "sum"), sparsity_mean=("sparsity", "mean"))
        .reset_index()
    )
    dense = gap_seed.loc[gap_seed["gap"].notna()].groupby(cell, observed=True)["dense_acc"].mean()
    table = (
        table.merge(extra, on=cell)
        .merge(gaps, on=cell, how="left")
        .merge(dense.rename("dense_mean").reset_index(), on=cell, how="left")
    )

    # Every method x allocation of the sweep (completed or not) gets the core ratios; extreme ones
    # where its dataset/model reached them.
    swept = with_setting(without_dense(results))
    combos = swept.loc[swept["control"] == "none", KEYS].drop_duplicates()
    reached = matched[["dataset", "model", "ratio"]].drop_duplicates()
    core = combos.merge(pd.DataFrame({"ratio": np.asarray(CORE_RATIOS, dtype=np.float64)}), how="cross")
    extreme = combos.merge(reached.loc[reached["ratio"] > max(CORE_RATIOS)], on=["dataset", "model"])
    frame = pd.concat([core, extreme], ignore_index=True).drop_duplicates()
    table = frame.merge(table, on=cell, how="left")
    for column in ("n", "n_trials", "n_gap"):
        table[column] = table[column].fillna(0).astype("int64")
    table["target_sparsity"] = 1.0 - 1.0 / table["ratio"]
    # A ratio with trials that all stopped / failed / diverged was swept: say that instead.
    tried = (
        swept.loc[swept["control"] == "none", KEYS]
        .assign(
            ratio=match_ratio(
                swept.loc[
                    swept["control"] == "none", "sparsity_raw" if "sparsity_raw" in swept.columns else "sparsity"
                ].to_numpy(dtype=np.float64),
                tolerance=tolerance,
            )
        )
        .dropna(subset=["ratio"])
        .drop_duplicates()
    )
    was_tried = table[cell].merge(tried.assign(_tried=True), on=cell, how="left")["_tried"].eq(True).to_numpy()
    table["note"] = np.select(
        [(table["n"] == 0) & was_tried, table["n"] == 0, table["n"] < MIN_RUNS_CI, table["n_gap"] == 0],
        ["no_completed_trials", "not_swept", "too_few_runs", NO_DENSE],
        "",
    )
    table["ratio"] = table["ratio"].astype("int64")
    return table[columns].sort_values(KEYS + ["ratio"]).reset_index(drop=True)


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset/model/budget/method/allocation, one column per ratio: "mean (gap)"."""
    if table.empty:
        return pd.DataFrame()
    gap = table["gap"].map(lambda g: "" if pd.isna(g) else f" ({g:+.3f})")  # one per table cell
    text = np.where(table["n"] > 0, table["mean"].map(lambda m: f"{m:.3f}") + gap, "-")
    wide = table.assign(text=text, column=table["ratio"].map(lambda r: f"{r}x")).pivot_table(
        index=KEYS, columns="column", values="text", aggfunc="first", sort=False
    )
    order = [f"{r}x" for r in sorted(table["ratio"].unique())]
    wide = wide.reindex(columns=order).fillna("-")
    wide.columns.name = None
    return wide.reset_index()
