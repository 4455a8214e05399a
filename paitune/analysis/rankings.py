"""Do rankings of PaI choices generalize across contexts?

A *factor* is what is compared: ``method``, ``allocation`` or ``method_x_allocation``. Choices are
compared only within a *context*: dataset x model x sparsity x seed x training budget, plus the
other factor held fixed (methods are compared under the same allocation and vice versa), using
completed trials with control ``none`` (the dense reference is not a choice: it is left out). Several trials of one choice in one context (e.g. several
learning rates) are averaged.

Within a context of k choices, a choice's *win score* is (choices it beats + half the ties) / (k-1);
its *win rate* is the mean win score over contexts, weighted by k-1 (= the share of all pairwise
comparisons it won), with a bootstrap CI over contexts.

Verdict rules (first that applies), evaluated per choice:
- ``too_few_runs``: fewer than MIN_CONTEXTS contexts, or fewer than two choices.
- *slices* are the contexts grouped by the level of one context variable other than the seed
  (e.g. all contexts at sparsity 0.9, or all on dataset cifar10); slices with fewer than
  MIN_CONTEXTS contexts are ignored.
- ``robust_winner``: the overall win-rate CI lies above 0.5 and the win rate is above 0.5 in
  every slice (ahead of the field overall, behind it nowhere).
- ``context_dependent``: the choice's win scores differ between the levels of some context
  variable (Kruskal-Wallis, p below 0.05 / (variables x choices), Bonferroni over all those
  tests so a table of pure noise rarely shows one) and it is ahead of the field (win rate
  above 0.5) in at least one slice: it wins somewhere, not everywhere.
- ``robust_loser``: the overall CI lies below 0.5 and the win rate is below 0.5 in every slice.
- ``no_difference``: none of the above; the choice is not shown to differ from the field.
``heterogeneity_p`` in the table is the smallest Kruskal-Wallis p over the context variables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kruskal

from paitune.analysis.accuracy import CONTEXT_COLUMNS, completed_methods
from paitune.analysis.load import Results
from paitune.analysis.stats import (
    LEVEL, MIN_CONTEXTS, N_BOOT, SEED, friedman_p_value, grouped_mean_ci, kendalls_w,
)

FACTORS = {
    "method": ["allocation"],
    "allocation": ["method"],
    "method_x_allocation": [],
}
VERDICTS = ("robust_winner", "context_dependent", "no_difference", "robust_loser", "too_few_runs")


def context_scores(results: Results, factor: str) -> pd.DataFrame:
    """One row per (context, choice): {ctx, choice, acc, rank, k, win_score} + context columns."""
    done = completed_methods(results)
    done = done.loc[done["control"] == "none"]
    if factor == "method_x_allocation":
        choice = done["method"].astype(str) + "/" + done["allocation"].astype(str)
    else:
        choice = done[factor].astype(str)
    keys = CONTEXT_COLUMNS + FACTORS[factor]
    frame = done[keys].assign(choice=choice, acc=done["test_acc"])
    scores = frame.groupby(keys + ["choice"], dropna=False, observed=True)["acc"].mean().reset_index()
    scores["ctx"] = scores.groupby(keys, dropna=False, observed=True).ngroup()
    scores["k"] = scores.groupby("ctx")["choice"].transform("size")
    scores = scores.loc[scores["k"] >= 2].copy()
    scores["ctx"] = pd.factorize(scores["ctx"])[0]
    scores["rank"] = scores.groupby("ctx")["acc"].rank(ascending=False, method="average")
    scores["win_score"] = (scores["k"] - scores["rank"]) / (scores["k"] - 1)
    scores["weight"] = scores["k"] - 1
    scores["regret"] = scores.groupby("ctx")["acc"].transform("max") - scores["acc"]
    return scores


def _slice_columns(scores: pd.DataFrame, factor: str) -> list[str]:
    if scores.empty:
        return []
    candidates = [c for c in CONTEXT_COLUMNS + FACTORS[factor] if c != "seed"]
    return [c for c in candidates if scores[c].nunique(dropna=False) > 1]


def slice_win_rates(scores: pd.DataFrame, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Win rate of each choice within each slice: {choice, slice, level, n, mean, ci_low, ci_high}."""
    parts = []
    for column in _slice_columns(scores, factor):
        table = grouped_mean_ci(scores.assign(level=scores[column].astype(str)), ["choice", "level"],
                                "win_score", "weight", n_boot=n_boot, seed=seed, min_size=MIN_CONTEXTS)
        parts.append(table.assign(slice=column))
    names = ["choice", "slice", "level", "n", "mean", "ci_low", "ci_high"]
    if not parts:
        return pd.DataFrame(columns=names)
    return pd.concat(parts, ignore_index=True)[names]


def heterogeneity(scores: pd.DataFrame, factor: str) -> pd.Series:
    """Per choice: the smallest Kruskal-Wallis p-value, over the slice variables, of the test
    that its per-context win scores have the same distribution at every level."""
    p_values: dict[str, float] = {}
    columns = _slice_columns(scores, factor)
    for (choice, group) in scores.groupby("choice"):  # choices x variables tests: a handful
        best = np.nan
        for column in columns:
            samples = [g.to_numpy() for _, g in group.groupby(column, observed=True)["win_score"]
                       if len(g) >= MIN_CONTEXTS]
            if len(samples) < 2 or np.ptp(np.concatenate(samples)) == 0:
                continue
            p = kruskal(*samples).pvalue
            best = p if np.isnan(best) else min(best, p)
        p_values[choice] = best
    return pd.Series(p_values, dtype=np.float64)


def _verdicts(overall: pd.DataFrame, slices: pd.DataFrame, n_choices: int, n_variables: int) -> pd.Series:
    usable = slices.loc[slices["n"] >= MIN_CONTEXTS]
    ahead_all = (usable["mean"] > 0.5).groupby(usable["choice"]).all()
    ahead_any = (usable["mean"] > 0.5).groupby(usable["choice"]).any()
    behind_all = (usable["mean"] < 0.5).groupby(usable["choice"]).all()
    threshold = (1.0 - LEVEL) / max(1, n_variables * n_choices)
    verdicts = []
    for row in overall.itertuples():  # one row per choice: a handful, not per trial
        if row.n_contexts < MIN_CONTEXTS or n_choices < 2:
            verdicts.append("too_few_runs")
        elif row.ci_low > 0.5 and ahead_all.get(row.choice, True):
            verdicts.append("robust_winner")
        elif row.heterogeneity_p < threshold and ahead_any.get(row.choice, False):
            verdicts.append("context_dependent")
        elif row.ci_high < 0.5 and behind_all.get(row.choice, True):
            verdicts.append("robust_loser")
        else:
            verdicts.append("no_difference")
    return pd.Series(verdicts, index=overall.index)


def rank_choices(results: Results, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED,
                 with_slices: bool = False):
    """Per choice: {factor, choice, mean_rank, win_rate, ci_low, ci_high, n_contexts, verdict, ...}.

    With ``with_slices`` also returns the per-slice win rates the verdicts rest on.
    """
    scores = context_scores(results, factor)
    columns = ["factor", "choice", "mean_rank", "win_rate", "ci_low", "ci_high", "n_contexts",
               "verdict", "best_share", "mean_regret", "mean_acc", "heterogeneity_p"]
    if scores.empty:
        empty = pd.DataFrame(columns=columns)
        return (empty, slice_win_rates(scores, factor)) if with_slices else empty
    overall = grouped_mean_ci(scores, ["choice"], "win_score", "weight", n_boot=n_boot, seed=seed,
                              min_size=MIN_CONTEXTS)
    overall = overall.rename(columns={"n": "n_contexts", "mean": "win_rate"})
    stats = scores.groupby("choice").agg(
        mean_rank=("rank", "mean"), best_share=("regret", lambda r: float((r == 0).mean())),
        mean_regret=("regret", "mean"), mean_acc=("acc", "mean"),
    ).reset_index()
    overall = overall.merge(stats, on="choice")
    slices = slice_win_rates(scores, factor, n_boot=n_boot, seed=seed)
    overall["heterogeneity_p"] = overall["choice"].map(heterogeneity(scores, factor))
    overall["verdict"] = _verdicts(overall, slices, scores["choice"].nunique(),
                                   len(_slice_columns(scores, factor)))
    overall["factor"] = factor
    overall = overall[columns].sort_values("win_rate", ascending=False).reset_index(drop=True)
    return (overall, slices) if with_slices else overall


def pairwise_win_rates(results: Results, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Share of shared contexts where ``choice`` beats ``opponent`` (ties count half), with CI."""
    scores = context_scores(results, factor)[["ctx", "choice", "acc"]]
    if scores.empty:
        return pd.DataFrame(columns=["factor", "choice", "opponent", "n_contexts", "win_rate", "ci_low", "ci_high"])
    pairs = scores.merge(scores, on="ctx", suffixes=("", "_opp"))
    pairs = pairs.loc[pairs["choice"] != pairs["choice_opp"]]
    pairs = pairs.assign(
        win=(pairs["acc"] > pairs["acc_opp"]) + 0.5 * (pairs["acc"] == pairs["acc_opp"]),
        opponent=pairs["choice_opp"],
    )
    table = grouped_mean_ci(pairs, ["choice", "opponent"], "win", n_boot=n_boot, seed=seed,
                            min_size=MIN_CONTEXTS)
    table = table.rename(columns={"n": "n_contexts", "mean": "win_rate"})
    table.insert(0, "factor", factor)
    return table


def _loco_regret(matrix: np.ndarray) -> np.ndarray:
    """Regret per context of the choice with the best mean accuracy over all *other* contexts."""
    present = ~np.isnan(matrix)
    values = np.where(present, matrix, 0.0)
    sums, counts = values.sum(axis=0), present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        held_out_means = (sums[None, :] - values) / (counts[None, :] - present)
    eligible = present & (counts[None, :] - present > 0)
    held_out_means = np.where(eligible, held_out_means, -np.inf)
    pick = held_out_means.argmax(axis=1)
    ok = eligible.any(axis=1)
    best = np.nanmax(matrix, axis=1)
    chosen = matrix[np.arange(len(matrix)), pick]
    return np.where(ok, best - chosen, np.nan)


def _transfer_regret(matrix: np.ndarray) -> np.ndarray:
    """Per target context: mean regret of using another context's best choice here."""
    present = ~np.isnan(matrix)
    filled = np.where(present, matrix, -np.inf)
    best_choice = filled.argmax(axis=1)
    best_counts = np.bincount(best_choice, minlength=matrix.shape[1]).astype(np.float64)
    # How many *other* contexts name each choice their best.
    donors = best_counts[None, :] - np.eye(matrix.shape[1])[best_choice]
    donors = np.where(present, donors, 0.0)
    regret = np.where(present, np.nanmax(matrix, axis=1)[:, None] - np.where(present, matrix, 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (donors * regret).sum(axis=1) / donors.sum(axis=1)


def concordance(results: Results, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Kendall's W (tie-corrected) over the contexts that hold every choice, Friedman p, and the
    regret of carrying choices across contexts (leave-one-context-out and pairwise transfer)."""
    scores = context_scores(results, factor)
    record = {"factor": factor, "kendall_w": np.nan, "n_contexts": 0, "n_choices": 0,
              "friedman_p": np.nan, "loco_regret": np.nan, "loco_ci_low": np.nan,
              "loco_ci_high": np.nan, "transfer_regret": np.nan, "n_regret_contexts": 0}
    if scores.empty:
        return record
    acc = scores.pivot(index="ctx", columns="choice", values="acc")
    ranks = scores.pivot(index="ctx", columns="choice", values="rank")
    complete = ranks.notna().all(axis=1).to_numpy()
    m, n = int(complete.sum()), ranks.shape[1]
    record["n_contexts"], record["n_choices"] = m, n
    if m >= MIN_CONTEXTS and n >= 2:
        # Ranks are recomputed on complete contexts only (they already are: k = n there).
        w = kendalls_w(ranks.to_numpy()[complete])
        record["kendall_w"], record["friedman_p"] = w, friedman_p_value(w, m, n)
    matrix = acc.to_numpy()
    if len(matrix) >= MIN_CONTEXTS:
        regrets = pd.DataFrame({"g": 0, "loco": _loco_regret(matrix), "transfer": _transfer_regret(matrix)})
        loco = grouped_mean_ci(regrets, ["g"], "loco", n_boot=n_boot, seed=seed, min_size=MIN_CONTEXTS)
        if len(loco):
            record.update(loco_regret=float(loco["mean"][0]), loco_ci_low=float(loco["ci_low"][0]),
                          loco_ci_high=float(loco["ci_high"][0]), n_regret_contexts=int(loco["n"][0]))
        record["transfer_regret"] = float(np.nanmean(regrets["transfer"])) if regrets["transfer"].notna().any() else np.nan
    return record


def ranking_tables(results: Results, factors=tuple(FACTORS), *, n_boot: int = N_BOOT, seed: int = SEED):
    """(rankings, concordance, pairwise, slices) over the given factors, each a DataFrame."""
    ranked, slices, pairs, conc = [], [], [], []
    for factor in factors:
        table, factor_slices = rank_choices(results, factor, n_boot=n_boot, seed=seed, with_slices=True)
        ranked.append(table)
        slices.append(factor_slices.assign(factor=factor))
        pairs.append(pairwise_win_rates(results, factor, n_boot=n_boot, seed=seed))
        conc.append(concordance(results, factor, n_boot=n_boot, seed=seed))
    return (
        pd.concat(ranked, ignore_index=True),
        pd.DataFrame(conc),
        pd.concat(pairs, ignore_index=True),
        pd.concat(slices, ignore_index=True),
    )
