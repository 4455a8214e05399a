"""Early vs later: would judging trials early (as ASHA does) keep the ones that end best?

ASHA compares a trial only with its own context, so every correlation here is within context:
validation accuracy after epoch ``epoch`` and test accuracy at a later ``target_epoch`` are
turned into percentile ranks within each context, then rank-correlated (Spearman, bootstrap CI)
per training budget (max_epochs) and epoch pair, overall and per method. Control ``none`` only,
the dense reference and failed trials left out.

Stopped trials are data, and a statistic computed only on the trials allowed to finish is a
statistic of survivors. So the targets are *rungs*: the budget itself, and the (up to
MAX_RUNGS most frequent) epochs at which trials were stopped. Each (epoch, target) row uses every
trial that reached the target epoch (``n`` of them). ``survivors_only`` is true when some trial
of that budget was stopped before the target: the row then describes a selected sample, and only
the rows with ``survivors_only`` false (in particular, rung-to-rung ones and any budget where
nothing was stopped) speak for all trials.

``top_recall`` is a direct safety measure: of the top quarter of trials of a context at the
target, the share that ranked in the top third at ``epoch`` (what a rung with reduction factor 3
would keep).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.common import DENSE_METHOD, context_of, reached_epochs
from paitune.analysis.load import Results
from paitune.analysis.stats import N_BOOT, SEED, grouped_spearman

TOP_FINAL = 0.25
KEEP_AT_RUNG = 1.0 / 3.0
MAX_RUNGS = 3
COLUMNS = ["max_epochs", "epoch", "target_epoch", "spearman", "ci_low", "ci_high", "n", "top_recall", "survivors_only"]


def _targets(trials: pd.DataFrame) -> pd.DataFrame:
    """{max_epochs, target_epoch, survivors_only}: per budget, the budget and the main rungs."""
    rows = []
    for budget, group in trials.groupby("max_epochs"):
        stopped = group.loc[group["reached"] < budget, "reached"]
        rungs = stopped.value_counts().head(MAX_RUNGS).index.tolist() if len(stopped) else []
        for target in sorted(set(int(r) for r in rungs if r > 0) | {int(budget)}):
            rows.append(
                {"max_epochs": budget, "target_epoch": target, "survivors_only": bool((stopped < target).any())}
            )
    return pd.DataFrame(rows, columns=["max_epochs", "target_epoch", "survivors_only"])


def early_vs_final(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall, by_method): {[method,] max_epochs, epoch, target_epoch, spearman, ci_low, ci_high,
    n, top_recall, survivors_only}."""
    trials = results.trials
    keep = (
        (trials["control"] == "none") & (trials["method"] != DENSE_METHOD) & (trials["status"] != "failed")
    ).to_numpy()
    base = pd.DataFrame(
        {
            "tix": trials["tix"].to_numpy(np.int64),
            "method": trials["method"].to_numpy(),
            "max_epochs": trials["max_epochs"].to_numpy(),
            "context": context_of(trials).to_numpy(),
            "reached": reached_epochs(results)[trials["tix"].to_numpy(np.int64)],
        }
    ).loc[keep]
    epochs = results.epochs
    empty = (pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=["method"] + COLUMNS))
    if base.empty or epochs.empty or "val_acc" not in epochs.columns:
        return empty
    targets = _targets(base)
    series = epochs[["tix", "epoch", "val_acc", "test_acc"]].merge(base, on="tix", how="inner")
    series = series.loc[series["epoch"] <= series["max_epochs"]]
    frames = []
    for target in targets.itertuples():  # a budget and its rungs: a handful
        members = base.loc[(base["max_epochs"] == target.max_epochs) & (base["reached"] >= target.target_epoch), "tix"]
        at_target = series.loc[
            series["tix"].isin(members) & (series["epoch"] == target.target_epoch), ["tix", "test_acc"]
        ]
        early = series.loc[
            series["tix"].isin(members) & (series["epoch"] <= target.target_epoch),
            ["tix", "epoch", "val_acc", "method", "max_epochs", "context"],
        ]
        frame = early.merge(at_target.rename(columns={"test_acc": "target_acc"}), on="tix", how="inner")
        frames.append(frame.assign(target_epoch=target.target_epoch, survivors_only=target.survivors_only))
    if not frames:
        return empty
    frame = pd.concat(frames, ignore_index=True).dropna(subset=["val_acc", "target_acc"])
    within = ["max_epochs", "target_epoch", "epoch", "context"]
    grouped = frame.groupby(within, observed=True, sort=False)
    frame["early_rank"] = grouped["val_acc"].rank(pct=True)
    frame["target_rank"] = grouped["target_acc"].rank(pct=True)
    final_top = frame["target_rank"] > 1 - TOP_FINAL
    early_top = frame["early_rank"] > 1 - KEEP_AT_RUNG
    frame["_hit"] = (early_top & final_top).astype(np.float64)
    frame["_top"] = final_top.astype(np.float64)
    flags = targets.set_index(["max_epochs", "target_epoch"])["survivors_only"]
    out = []
    for extra in ([], ["method"]):
        keys = extra + ["max_epochs", "epoch", "target_epoch"]
        table = grouped_spearman(frame, keys, "early_rank", "target_rank", n_boot=n_boot, seed=seed)
        sums = frame.groupby(keys, observed=True)[["_hit", "_top"]].sum()
        recall = (sums["_hit"] / sums["_top"].where(sums["_top"] > 0)).rename("top_recall").reset_index()
        table = table.merge(recall, on=keys, how="left")
        table["survivors_only"] = [
            bool(flags.get((b, t), False)) for b, t in zip(table["max_epochs"], table["target_epoch"])
        ]
        table = table.sort_values(keys).reset_index(drop=True)
        out.append(table[extra + COLUMNS])
    return out[0], out[1]
