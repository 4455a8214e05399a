"""PaI vs after-training: each method's gap to lottery-ticket rewinding (IMP) at the same sparsity.

IMP (``method == "imp"``: iterative magnitude pruning after training, weights rewound to an early
epoch; Frankle et al. 2020) is the pruning-after-training reference the PaI survey (Wang et al.
2022) judges PaI against. Every other method — static PaI masks, dynamic sparse training (set,
rigl) and sparse selection (edge_popup) — is compared with it in the same context: dataset,
model, budget, sparsity level and seed (control none, completed trials). Trials of one seed are
averaged first (IMP's across its allocations too: it is one reference per context), then
``gap`` = accuracy(method) - accuracy(IMP) is averaged over the paired seeds with a bootstrap CI;
``n`` = pairs. Sparsity levels are matched exactly (after the binning of continuously sampled
sparsity, ``paitune.analysis.levels``); a level IMP did not reach has no row.

Verdict: ``too_few_runs`` (fewer than MIN_RUNS_CI pairs: no CI), ``below_imp`` (CI below 0),
``above_imp`` (CI above 0), ``matches_imp`` (CI includes 0: no difference shown at this n).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.accuracy import completed_methods
from paitune.analysis.levels import compression_ratio
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_RUNS_CI, N_BOOT, SEED, grouped_mean_ci

IMP_METHOD = "imp"
LEVEL_KEYS = ["dataset", "model", "max_epochs", "sparsity"]
CELL = LEVEL_KEYS + ["method", "allocation"]


def pai_vs_imp(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{dataset, model, max_epochs, method, allocation, sparsity, compression, n, mean_method,
    mean_imp, gap, ci_low, ci_high, verdict}; empty when the sweep has no completed IMP trial."""
    columns = ["dataset", "model", "max_epochs", "method", "allocation", "sparsity", "compression", "n",
               "mean_method", "mean_imp", "gap", "ci_low", "ci_high", "verdict"]
    done = completed_methods(results)
    done = done.loc[done["control"] == "none"]
    imp = done.loc[done["method"] == IMP_METHOD]
    if imp.empty:
        return pd.DataFrame(columns=columns)
    reference = (imp.groupby(LEVEL_KEYS + ["seed"], observed=True)["test_acc"].mean()
                 .rename("acc_imp").reset_index())
    others = done.loc[done["method"] != IMP_METHOD]
    per_seed = (others.groupby(CELL + ["seed"], observed=True)["test_acc"].mean()
                .rename("acc").reset_index())
    pairs = per_seed.merge(reference, on=LEVEL_KEYS + ["seed"], how="inner")
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    pairs["gap"] = pairs["acc"] - pairs["acc_imp"]
    table = grouped_mean_ci(pairs, CELL, "gap", n_boot=n_boot, seed=seed).rename(columns={"mean": "gap"})
    means = pairs.groupby(CELL, observed=True).agg(mean_method=("acc", "mean"), mean_imp=("acc_imp", "mean"))
    table = table.merge(means.reset_index(), on=CELL)
    table["compression"] = compression_ratio(table["sparsity"])
    table["verdict"] = np.select(
        [table["n"] < MIN_RUNS_CI, table["ci_high"] < 0, table["ci_low"] > 0],
        ["too_few_runs", "below_imp", "above_imp"], "matches_imp")
    return table[columns].sort_values(["dataset", "model", "max_epochs", "method", "allocation", "sparsity"]
                                      ).reset_index(drop=True)
