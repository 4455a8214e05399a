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

Every trial counts with its test accuracy at its context's common epoch (the last epoch every
trial of the context reached, IMP's included: ``paitune.analysis.common``), and per method x
context the config with the best validation accuracy is used. The unit is the seed: ``gap`` is
the mean over seeds of accuracy(method) - accuracy(IMP), with a Student-t 95% interval over the
paired seeds; ``n`` = ``n_units`` = paired seeds; ``p_adjusted`` = the t-test p of gap = 0,
Holm-adjusted over every row; ``p_equivalent`` = the TOST p of |gap| < EQUIVALENCE_MARGIN
(each equivalence claim tested on its own at 5%; the multiplicity correction guards the claims
of a difference); ``epoch`` = the common epoch compared at (mean over the row's contexts).

Verdict: ``too_few_runs`` (fewer than MIN_UNITS paired seeds), ``below_imp`` / ``above_imp``
(p_adjusted < 0.05, gap below / above 0), ``matches_imp`` (equivalent: p_equivalent
< 0.05), else ``inconclusive``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.common import DENSE_METHOD, scored_trials
from paitune.analysis.levels import compression_ratio
from paitune.analysis.load import Results
from paitune.analysis.stats import ALPHA, MIN_UNITS, N_BOOT, SEED, grouped_t_test, holm

IMP_METHOD = "imp"
EQUIVALENCE_MARGIN = 0.01  # accuracy (fraction): matches_imp means |gap| < 1 point, shown by TOST
LEVEL_KEYS = ["dataset", "model", "max_epochs", "sparsity"]
CELL = LEVEL_KEYS + ["method", "allocation"]


def pai_vs_imp(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{dataset, model, max_epochs, method, allocation, sparsity, compression, n, n_units,
    mean_method, mean_imp, gap, ci_low, ci_high, verdict, p_adjusted, p_equivalent,
    epoch}; empty when the sweep has no IMP trial with an accuracy."""
    columns = [
        "dataset",
        "model",
        "max_epochs",
        "method",
        "allocation",
        "sparsity",
        "compression",
        "n",
        "n_units",
        "mean_method",
        "mean_imp",
        "gap",
        "ci_low",
        "ci_high",
        "verdict",
        "p_adjusted",
        "p_equivalent",
        "epoch",
    ]
    scored = scored_trials(results)
    done = scored.loc[scored["selected"] & (scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
    imp = done.loc[done["method"] == IMP_METHOD]
    if imp.empty:
        return pd.DataFrame(columns=columns)
    reference = imp.groupby(LEVEL_KEYS + ["seed"], observed=True)["acc"].mean().rename("acc_imp").reset_index()
    others = done.loc[done["method"] != IMP_METHOD]
    per_seed = (
        others.groupby(CELL + ["seed"], observed=True)
        .agg(acc=("acc", "mean"), epoch=("common_epoch", "mean"))
        .reset_index()
    )
    pairs = per_seed.merge(reference, on=LEVEL_KEYS + ["seed"], how="inner")
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    pairs["gap"] = pairs["acc"] - pairs["acc_imp"]
    table = grouped_t_test(pairs, CELL, "gap", margin=EQUIVALENCE_MARGIN).rename(columns={"mean": "gap"})
    means = pairs.groupby(CELL, observed=True).agg(
        mean_method=("acc", "mean"), mean_imp=("acc_imp", "mean"), epoch=("epoch", "mean")
    )
    table = table.merge(means.reset_index(), on=CELL)
    table["n"] = table["n_units"]
    table["compression"] = compression_ratio(table["sparsity"])
    tested = (table["n_units"] >= MIN_UNITS).to_numpy()
    table["p_adjusted"] = holm(np.where(tested, table["p"], np.nan))
    table["p_equivalent"] = np.where(tested, table["p_equivalent"], np.nan)
    table["verdict"] = np.select(
        [
            ~tested,
            (table["p_adjusted"] < ALPHA) & (table["gap"] < 0),
            (table["p_adjusted"] < ALPHA) & (table["gap"] > 0),
            table["p_equivalent"] < ALPHA,
        ],
        ["too_few_runs", "below_imp", "above_imp", "matches_imp"],
        "inconclusive",
    )
    return (
        table[columns]
        .sort_values(["dataset", "model", "max_epochs", "method", "allocation", "sparsity"])
        .reset_index(drop=True)
    )
