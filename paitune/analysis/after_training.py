"""PaI vs after-training: each method's gap to lottery-ticket rewinding (IMP) at the same sparsity.

IMP (``method == "imp"``: iterative magnitude pruning after training, weights rewound to an early
epoch; Frankle et al. 2020) is the pruning-after-training reference the PaI survey (Wang et al.
2022) judges PaI against. Every other method — static PaI masks, dynamic sparse training (set,
rigl) and sparse selection (edge_popup) — is compared with it in the same context: dataset,
model, budget, sparsity level and seed (control none; per method x context the config with the
best validation accuracy, ``paitune.analysis.common``). Sparsity levels are matched exactly
(after the binning of continuously sampled sparsity, ``paitune.analysis.levels``); a level IMP
did not reach has no row.

Pairs: each trial of a method meets the IMP trial of its level, seed and allocation; where IMP did
not run the method's allocation there, each IMP trial of its level and seed (pooling IMP's
allocations where the method's own exists would average a gap of +2 points to one and -2 to the
other into a false match: planted, ``matches_imp`` in 236 of 240 rows). A pair meets at the last
epoch *both* reached, min(reached, reached by the
IMP partner), as the sanity checks pair a control with its partner: two trials that ran the
budget meet at its end, whatever other methods of the context did, and an ASHA-stopped trial
meets its partner where it was stopped. The pair's gap = test accuracy(method) - test
accuracy(IMP) at that epoch.

The unit is the seed: a seed's pairs are averaged first; ``gap`` is the mean over seeds, with a
Student-t 95% interval over the paired seeds; ``n`` = ``n_units`` = paired seeds, ``n_pairs`` =
the pairs behind them, ``n_censored`` = pairs compared before the budget (one of the two was
stopped), ``epoch`` = the epoch compared at (mean over the row's seeds of the mean over pairs),
``mean_method`` / ``mean_imp`` = the two accuracies averaged the same way (their difference is
``gap``). ``p_adjusted`` = the t-test p of gap = 0, Holm-adjusted over every row tested;
``p_equivalent`` = the TOST p (Schuirmann 1987) of |gap| < EQUIVALENCE_MARGIN, Holm-adjusted
over the rows that may claim equivalence: rows tested whose every pair ran the budget. A pair
compared before the budget says nothing about equivalence at the budget (the learning curves of
the two converge early on), so a row with such a pair has no ``p_equivalent``, and ``note`` names
how many pairs and the epoch(s) they were compared at.

Verdict: ``too_few_runs`` (fewer than MIN_UNITS paired seeds), ``below_imp`` / ``above_imp``
(p_adjusted < 0.05, gap below / above 0, and the pairs that ran the budget show it too:
``p_adjusted_budget``, the same t-test on them alone, Holm-adjusted over the rows, below 0.05 with
the same sign; an intersection-union test), ``below_imp_at_rungs`` / ``above_imp_at_rungs`` (only
the first holds: the gap shows where ASHA compared the pairs at a rung), ``matches_imp``
(p_equivalent < 0.05), else ``inconclusive``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.common import DENSE_METHOD, at_budget, at_last_shared_epoch, scored_trials
from paitune.analysis.levels import compression_ratio
from paitune.analysis.load import Results
from paitune.analysis.stats import ACCURACY_MARGIN, ALPHA, MIN_UNITS, N_BOOT, SEED, grouped_t_test, holm

IMP_METHOD = "imp"
EQUIVALENCE_MARGIN = ACCURACY_MARGIN  # matches_imp means |gap| < 1 point, shown by TOST
LEVEL_KEYS = ["dataset", "model", "max_epochs", "sparsity"]
CELL = LEVEL_KEYS + ["method", "allocation"]
COLUMNS = [
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
    "p_adjusted_budget",
    "p_equivalent",
    "epoch",
    "n_pairs",
    "n_censored",
    "note",
]


def imp_pairs(results: Results) -> pd.DataFrame:
    """One row per (trial of a method, IMP trial of its level and seed): {CELL, seed, tix,
    tix_imp, epoch, acc, acc_imp, gap, censored}; epoch = the last epoch both reached, censored =
    epoch before the budget. Only pairs with an accuracy on both sides at that epoch."""
    scored = scored_trials(results)
    done = scored.loc[scored["selected"] & (scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
    keys = LEVEL_KEYS + ["seed"]
    imp = done.loc[done["method"] == IMP_METHOD, keys + ["allocation", "tix", "reached"]]
    others = done.loc[done["method"] != IMP_METHOD, CELL + ["seed", "tix", "reached"]]
    pairs = others.merge(imp, on=keys, how="inner", suffixes=("", "_imp"))
    # The IMP of the trial's own allocation where it ran, else every IMP of the level and seed.
    same = pairs["allocation"] == pairs["allocation_imp"]
    pairs = pairs.loc[same | ~same.groupby(pairs["tix"]).transform("any")].drop(columns="allocation_imp")
    if pairs.empty:
        return pairs.assign(epoch=[], acc=[], acc_imp=[], gap=[], censored=[])
    epoch, acc, acc_imp = at_last_shared_epoch(
        results, pairs["tix"].to_numpy(), pairs["reached"].to_numpy(np.float64),
        pairs["tix_imp"].to_numpy(), pairs["reached_imp"].to_numpy(np.float64),
    )  # fmt: skip
    budget = pairs["max_epochs"].to_numpy(np.float64)
    pairs = pairs.assign(epoch=epoch, acc=acc, acc_imp=acc_imp, gap=acc - acc_imp, censored=~at_budget(epoch, budget))
    return pairs.loc[pairs["gap"].notna()].drop(columns=["reached", "reached_imp"]).reset_index(drop=True)


def _epochs_text(low: float, high: float) -> str:
    return f"epoch {low:g}" if low == high else f"epochs {low:g}-{high:g}"


def _number(value) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _note(row) -> str:
    if not row.n_censored:
        return ""
    return (
        f"{int(row.n_censored)} of {int(row.n_pairs)} pairs compared before the {_number(row.max_epochs)}-epoch "
        f"budget, at {_epochs_text(row.censored_low, row.censored_high)} (the last epoch both reached): "
        "no equivalence with IMP is claimed from them"
    )


def _budget_p(pairs: pd.DataFrame) -> pd.DataFrame:
    """{CELL, gap_budget, p_budget}: the mean gap over seeds and the t-test p of gap = 0, on the
    pairs that both ran the budget (NaN p below MIN_UNITS such seeds)."""
    full = pairs.loc[~pairs["censored"].to_numpy(bool)]
    if full.empty:
        return pd.DataFrame(columns=[*CELL, "gap_budget", "p_budget"])
    per_seed = full.groupby(CELL + ["seed"], observed=True)["gap"].mean().reset_index()
    tested = grouped_t_test(per_seed, CELL, "gap")
    p = tested["p"].where(tested["n_units"] >= MIN_UNITS)
    return tested[CELL].assign(gap_budget=tested["mean"].to_numpy(), p_budget=p.to_numpy())


def pai_vs_imp(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{dataset, model, max_epochs, method, allocation, sparsity, compression, n, n_units,
    mean_method, mean_imp, gap, ci_low, ci_high, verdict, p_adjusted, p_equivalent, epoch,
    n_pairs, n_censored, note}; empty when the sweep has no IMP trial with an accuracy.
    ``n_boot`` and ``seed`` are accepted like every table's, unused: the interval is Student-t."""
    pairs = imp_pairs(results)
    if pairs.empty:
        return pd.DataFrame(columns=COLUMNS)
    per_seed = (
        pairs.groupby(CELL + ["seed"], observed=True)
        .agg(gap=("gap", "mean"), acc=("acc", "mean"), acc_imp=("acc_imp", "mean"), epoch=("epoch", "mean"))
        .reset_index()
    )
    table = grouped_t_test(per_seed, CELL, "gap", margin=EQUIVALENCE_MARGIN).rename(columns={"mean": "gap"})
    means = per_seed.groupby(CELL, observed=True).agg(
        mean_method=("acc", "mean"), mean_imp=("acc_imp", "mean"), epoch=("epoch", "mean")
    )
    censored_epoch = pairs["epoch"].where(pairs["censored"])
    counts = (
        pairs.assign(_censored_epoch=censored_epoch)
        .groupby(CELL, observed=True)
        .agg(
            n_pairs=("gap", "size"),
            n_censored=("censored", "sum"),
            censored_low=("_censored_epoch", "min"),
            censored_high=("_censored_epoch", "max"),
        )
    )
    table = table.merge(means.reset_index(), on=CELL).merge(counts.reset_index(), on=CELL)
    table = table.merge(_budget_p(pairs), on=CELL, how="left")
    table["n"] = table["n_units"]
    table["n_censored"] = table["n_censored"].astype("int64")
    table["compression"] = compression_ratio(table["sparsity"])
    tested = (table["n_units"] >= MIN_UNITS).to_numpy()
    claimable = tested & (table["n_censored"] == 0).to_numpy()
    table["p_adjusted"] = holm(np.where(tested, table["p"], np.nan))
    table["p_equivalent"] = holm(np.where(claimable, table["p_equivalent"], np.nan))
    table["p_adjusted_budget"] = holm(np.where(tested, table["p_budget"], np.nan))
    # A gap is a claim about the budget: the pairs that ran it must show it too (an
    # intersection-union test, each part at ALPHA); else it is a gap at ASHA's rungs.
    gap = table["p_adjusted"] < ALPHA
    shown = (table["p_adjusted_budget"] < ALPHA) & (np.sign(table["gap_budget"].fillna(0.0)) == np.sign(table["gap"]))
    table["verdict"] = np.select(
        [
            ~tested,
            gap & shown & (table["gap"] < 0),
            gap & shown & (table["gap"] > 0),
            gap & (table["gap"] < 0),
            gap & (table["gap"] > 0),
            table["p_equivalent"] < ALPHA,
        ],
        ["too_few_runs", "below_imp", "above_imp", "below_imp_at_rungs", "above_imp_at_rungs", "matches_imp"],
        "inconclusive",
    )
    table["note"] = [_note(row) for row in table.itertuples()]
    return (
        table[COLUMNS]
        .sort_values(["dataset", "model", "max_epochs", "method", "allocation", "sparsity"])
        .reset_index(drop=True)
    )
