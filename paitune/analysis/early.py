"""Early vs final: would judging trials early (as ASHA does) keep the ones that end best?

For completed trials (the only ones with a final accuracy), the validation accuracy after each
epoch — what ASHA sees at a rung — is rank-correlated with final accuracy (test_acc), per training
budget (max_epochs) and epoch, overall and per method. Survivors of ASHA are a selected sample, so
these correlations are over the trials that were allowed to finish.

``top_recall`` is a direct safety measure: of the final top quarter of trials, the share that
ranked in the top third at that epoch (what a rung with reduction factor 3 would keep).
"""

from __future__ import annotations

import pandas as pd

from paitune.analysis.accuracy import completed_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import N_BOOT, SEED, grouped_spearman

TOP_FINAL = 0.25
KEEP_AT_RUNG = 1.0 / 3.0


def early_vs_final(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall, by_method): {[method,] max_epochs, epoch, spearman, ci_low, ci_high, n, top_recall}."""
    done = completed_trials(results)[["tix", "method", "max_epochs", "test_acc"]]
    frame = results.epochs[["tix", "epoch", "val_acc"]].merge(done, on="tix", how="inner")
    frame = frame.loc[frame["epoch"] <= frame["max_epochs"]]
    out = []
    for extra in ([], ["method"]):
        keys = extra + ["max_epochs", "epoch"]
        table = grouped_spearman(frame, keys, "val_acc", "test_acc", n_boot=n_boot, seed=seed)
        grouped = frame.groupby(keys, observed=True)
        final_top = grouped["test_acc"].rank(pct=True, ascending=False) <= TOP_FINAL
        early_top = grouped["val_acc"].rank(pct=True, ascending=False) <= KEEP_AT_RUNG
        recall = (early_top & final_top).groupby([frame[k] for k in keys]).sum() / final_top.groupby(
            [frame[k] for k in keys]).sum()
        table = table.merge(recall.rename("top_recall").reset_index(), on=keys, how="left")
        out.append(table[keys + ["spearman", "ci_low", "ci_high", "n", "top_recall"]])
    return out[0], out[1]
