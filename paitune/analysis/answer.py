"""The answer the report opens with: do the PaI methods beat random pruning at matched layerwise
density, and does the allocation matter more than the method?

Both questions are answered from within-context, head-to-head comparisons, the seed as the unit
(``paitune.analysis.rankings.head_to_head``: per seed and pair of choices, the mean test-accuracy
difference over the blocks the two share, each pair at the last epoch both trials reached):

- **Method vs random at matched density.** Each method is compared with ``random`` under the same
  allocation (the same per-layer densities for the fixed allocations, the same target sparsity for
  ``global``); the pair's Holm-adjusted head-to-head p (``pairwise``) decides. Where the sweep ran
  shuffle controls, the method's shuffle delta (its own per-layer densities, random positions:
  random pruning at exactly that method's layerwise density; ``sanity``) is quoted beside it.
- **Allocation vs method.** How much a factor matters, per seed, is the accuracy gap between its
  best and worst choice, the two named by the *other* seeds (``cross_validated_spread``): an
  absolute difference would grow with noise and with a choice x seed interaction, this one has
  mean 0 unless the effect reproduces. Its mean over seeds is what the sentence quotes. These
  per-seed values are not independent (each seed helps name the pair for every other seed), so
  the verdict comes from sample splitting instead (``split_sample_test``): the pairs are named
  on half of the seeds and the allocation's gap minus the method's is t-tested over the other
  half, independent of the naming; the p-values of many such splits are combined by doubling
  their median (valid whatever their dependence). ``inconclusive`` when neither is shown to
  matter more.

Each answer is a row {question, subject, verdict, n_units, sentence}; the report prints the
sentences first, as one paragraph.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from paitune.analysis.common import p_text
from paitune.analysis.load import Results
from paitune.analysis.rankings import head_to_head
from paitune.analysis.stats import ALPHA, MIN_UNITS, SEED, one_sided_t_p, quantile_aggregated_p

# Splits of the seeds into a naming half and a testing half: all of them up to this many, else
# this many drawn (fixed seed).
MAX_SPLITS = 256

RANDOM = "random"
COLUMNS = ["question", "subject", "verdict", "n_units", "sentence"]


def _pct(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _budget_text(row) -> str:
    """Where some comparisons were made before the budget: what the pairs that ran it show."""
    same = row.n_units_budget == row.n_units and row.mean_diff_budget == row.mean_diff
    if same and row.p_adjusted_budget == row.p_adjusted:
        return ""  # every comparison was made at the budget: the same test
    seeds = f"{int(row.n_units_budget)} seed{'' if row.n_units_budget == 1 else 's'}"
    if not np.isfinite(row.p_adjusted_budget):
        return f"; pairs that ran the budget in {seeds}, no test below {MIN_UNITS}"
    return f"; at the budget {_pct(row.mean_diff_budget)} over {seeds}, Holm {p_text(row.p_adjusted_budget)}"


def versus_random(tables: dict[str, pd.DataFrame]) -> list[dict]:
    pairwise, sanity = tables.get("pairwise", pd.DataFrame()), tables.get("sanity", pd.DataFrame())
    if pairwise.empty:
        return []
    rows = pairwise.loc[(pairwise["factor"] == "method") & (pairwise["opponent"] == RANDOM)]
    shuffle = sanity.loc[sanity["control"] == "shuffle"].set_index("method") if not sanity.empty else pd.DataFrame()
    out = []
    for row in rows.sort_values("mean_diff", ascending=False).itertuples():
        n = int(row.n_units)
        significant = np.isfinite(row.p_adjusted) and row.p_adjusted < ALPHA and n >= MIN_UNITS
        # A claim about the budget needs the pairs that ran it to show it too (both tests at ALPHA).
        at_end = np.isfinite(row.p_adjusted_budget) and row.p_adjusted_budget < ALPHA
        ahead = significant and row.mean_diff > 0
        behind = significant and row.mean_diff < 0
        # The mean over contexts is not the answer where the contexts disagree: a lead in most of
        # them and a larger deficit in one averages to a lead. As a robust ranking verdict does,
        # the claim needs the lead (deficit) to hold across the contexts the two share.
        holds = _holds(getattr(row, "holds", None), row.mean_diff)
        holds_at_end = _holds(getattr(row, "holds_budget", None), row.mean_diff_budget)
        if n < MIN_UNITS:
            verdict, claim = "too_few_runs", "cannot be told apart from random pruning yet"
        elif (ahead or behind) and not (holds and (holds_at_end or not at_end)):
            verdict = "context_dependent"
            side = "ahead of" if ahead else "behind"
            claim = (
                f"is {side} random pruning at the same allocation on average, but not in every context "
                "(the rankings' per-context tables show where)"
            )
        elif ahead and at_end and row.mean_diff_budget > 0:
            verdict, claim = "beats_random", "beats random pruning at the same allocation"
        elif behind and at_end and row.mean_diff_budget < 0:
            verdict, claim = "loses_to_random", "loses to random pruning at the same allocation"
        elif ahead:
            verdict = "beats_random_at_rungs"
            claim = "is ahead of random pruning at the same allocation at ASHA's rungs, not shown at the budget"
        elif behind:
            verdict = "loses_to_random_at_rungs"
            claim = "is behind random pruning at the same allocation at ASHA's rungs, not shown at the budget"
        else:
            verdict, claim = "inconclusive", "is not shown to differ from random pruning at the same allocation"
        sentence = (
            f"{row.choice} {claim}: {_pct(row.mean_diff)} test accuracy, wins {row.win_rate:.0%} of its "
            f"head-to-head comparisons in {int(row.n_contexts)} contexts ({n} seeds, "
            + (f"Holm {p_text(row.p_adjusted)}" if np.isfinite(row.p_adjusted) else f"no test below {MIN_UNITS} seeds")
            + _budget_text(row)
            + ")"
        )
        if row.choice in shuffle.index:
            s = shuffle.loc[row.choice]
            s = s.iloc[0] if isinstance(s, pd.DataFrame) else s
            sentence += (
                f"; shuffling its mask within each layer (random pruning at its own layerwise density) "
                f"changes accuracy by {_pct(s['delta'])} ({s['verdict']})"
            )
        out.append(
            {
                "question": "pai_vs_random",
                "subject": row.choice,
                "verdict": verdict,
                "n_units": n,
                "sentence": sentence + ".",
            }
        )
    return out


def _holds(sign, diff: float) -> bool:
    """Whether a pairwise ``holds`` sign agrees with the direction of ``diff`` (a table without
    the column, as a caller may build by hand, is taken at its mean)."""
    if sign is None or pd.isna(sign):
        return True
    return int(sign) * (1 if diff > 0 else -1) > 0


def _advantages(h2h: pd.DataFrame) -> pd.DataFrame:
    """seeds x choices: each choice's accuracy relative to the mean of all k choices, per seed
    (choices missing in any seed left out). Its mean difference to the k - 1 others is
    k / (k - 1) times that (a_i minus the others' mean), so it is scaled by (k - 1) / k: the gap
    between two choices' advantages is then their accuracy gap, whatever k. Unscaled, a factor with
    two choices showed twice its gap and one with five 1.25 times, and the comparison of the two
    factors leaned towards the one with fewer choices."""
    if not len(h2h):
        return pd.DataFrame()
    per = h2h.groupby(["seed", "choice"]).agg(diff=("diff", "mean"), others=("opponent", "nunique"))
    scaled = per["diff"] * per["others"] / (per["others"] + 1)
    return scaled.unstack("choice").dropna(axis=1, how="any")


def cross_validated_spread(h2h: pd.DataFrame) -> pd.Series:
    """Per seed: how much the factor matters, cross-validated over seeds. The best and the worst
    choice are named from the *other* seeds (their mean advantages); the seed's own accuracy
    difference between those two is its value. A factor whose choices differ only by chance
    (or differently in every seed: a choice x seed interaction) has mean 0 however noisy; one
    with a reproducible effect has the best-minus-worst gap in points. (The values of different
    seeds are not independent: describe with their mean, test with ``split_sample_test``.)"""
    table = _advantages(h2h)
    if table.shape[0] < 2 or table.shape[1] < 2:
        return pd.Series(dtype=float)
    values = table.to_numpy(np.float64)
    out = {}
    for i, seed in enumerate(table.index):
        others = np.delete(values, i, axis=0).mean(axis=0)
        out[seed] = values[i, int(np.argmax(others))] - values[i, int(np.argmin(others))]
    return pd.Series(out)


def _naming_halves(n: int) -> np.ndarray:
    """(splits, n) booleans, true for the seeds that name the pairs: floor(n / 2) of the n seeds
    (the other, larger half tests), every such subset when there are at most MAX_SPLITS, else
    MAX_SPLITS drawn with SEED."""
    k = n // 2
    if math.comb(n, k) <= MAX_SPLITS:
        chosen = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    else:
        chosen = np.argsort(np.random.default_rng(SEED).random((MAX_SPLITS, n)), axis=1)[:, :k]
    halves = np.zeros((len(chosen), n), dtype=bool)
    np.put_along_axis(halves, chosen, True, axis=1)
    return halves


def split_sample_test(allocation: np.ndarray, method: np.ndarray) -> dict:
    """Does the allocation or the method matter more? Seeds x choices advantage tables of the
    two factors (the same seeds in the same order) in; {p, more, n_splits, p_allocation,
    p_method} out.

    For each split of the seeds (``_naming_halves``), each factor's best and worst choice are
    named by their mean advantage over the naming half; on every seed of the other half the
    factor's gap is that seed's advantage of the best minus that of the worst, and the
    allocation's gap minus the method's is t-tested over those seeds (one-sided, each way).
    Given the naming half the tested seeds are independent and the pair is fixed, so each
    split's p is valid; the splits' p-values are combined by ``quantile_aggregated_p`` (twice
    the median) and the two directions by Bonferroni: p = min(1, 2 min(p_allocation,
    p_method)), ``more`` the direction of the smaller. Needs 3 seeds (1 naming, 2 testing).
    """
    allocation, method = np.asarray(allocation, np.float64), np.asarray(method, np.float64)
    n = allocation.shape[0]
    out = {"p": np.nan, "more": "", "n_splits": 0, "p_allocation": np.nan, "p_method": np.nan}
    if n < MIN_UNITS or allocation.shape[1] < 2 or method.shape[1] < 2:
        return out
    naming = _naming_halves(n)
    k = int(naming[0].sum())

    def gaps(values: np.ndarray) -> np.ndarray:  # (splits, n): each seed's gap of the named pair
        means = naming @ values / k
        best, worst = np.argmax(means, axis=1), np.argmin(means, axis=1)
        return values[:, best].T - values[:, worst].T

    diff = gaps(allocation) - gaps(method)
    tested = diff[~naming].reshape(len(naming), n - k)
    greater, less = one_sided_t_p(tested, axis=1)
    p_allocation, p_method = quantile_aggregated_p(greater), quantile_aggregated_p(less)
    return {
        "p": min(1.0, 2.0 * min(p_allocation, p_method)),
        "more": "allocation" if p_allocation <= p_method else "method",
        "n_splits": len(naming),
        "p_allocation": p_allocation,
        "p_method": p_method,
    }


def _which_matters_more(h2h: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict | None]:
    """(per-seed cross-validated spreads of both factors, the split-sample test or None)."""
    both = pd.concat({factor: cross_validated_spread(h2h[factor]) for factor in h2h}, axis=1).dropna()
    if both.empty:
        return both, None
    tables = [_advantages(h2h[factor]).reindex(both.index).to_numpy(np.float64) for factor in h2h]
    return both, split_sample_test(*tables)


def allocation_vs_method(results: Results) -> list[dict]:
    factors = ("allocation", "method")
    h2h = {factor: head_to_head(results, factor) for factor in factors}
    both, test = _which_matters_more(h2h)
    if test is None:
        return []
    n = len(both)
    p = test["p"]
    if n < MIN_UNITS:
        verdict, claim = "too_few_runs", "Too few seeds to say whether the allocation or the method matters more"
    elif p < ALPHA:
        verdict = test["more"]
        claim = f"The {verdict} matters more"
    else:
        verdict, claim = "inconclusive", "Neither the allocation nor the method is shown to matter more"
    k = n // 2
    how = (
        f"; split-sample test: pairs named on {k} seeds, gaps compared on the other {n - k}, "
        f"over {test['n_splits']} splits, {p_text(p)}"
        if np.isfinite(p)
        else ""
    )
    at_end = {factor: head_to_head(results, factor, budget=True) for factor in factors}
    if verdict in factors and not all(_same_pairs(h2h[f], at_end[f]) for f in factors):
        # Some pairs were compared at ASHA's rungs: the claim about the budget needs the pairs that
        # ran it to show it too (an intersection-union test).
        end_both, end_test = _which_matters_more(at_end)
        shown = (
            end_test is not None and len(end_both) >= MIN_UNITS and end_test["p"] < ALPHA
            and end_test["more"] == verdict
        )  # fmt: skip
        end_p = p_text(end_test["p"]) if end_test is not None and np.isfinite(end_test["p"]) else "no test"
        how += f"; on the pairs that ran the budget ({len(end_both)} seeds) {end_p}"
        if not shown:
            verdict = f"{verdict}_at_rungs"
            claim += " where the pairs were compared (some at ASHA's rungs), not shown at the budget"
    sentence = (
        f"{claim}: the best and worst allocation differ by {_pct(both['allocation'].mean())} (same method, "
        f"context and seed), the best and worst method by {_pct(both['method'].mean())} (same allocation), "
        f"each pair named by the other seeds ({n} seeds{how})."
    )
    return [
        {
            "question": "allocation_vs_method",
            "subject": "allocation vs method",
            "verdict": verdict,
            "n_units": n,
            "sentence": sentence,
        }
    ]


def _same_pairs(h2h: pd.DataFrame, at_end: pd.DataFrame) -> bool:
    """Whether every comparison was made at the budget (the two head-to-head tables agree)."""
    if len(h2h) != len(at_end):
        return False
    key = ["seed", "choice", "opponent"]
    a, b = h2h.sort_values(key).reset_index(drop=True), at_end.sort_values(key).reset_index(drop=True)
    return bool((a[key] == b[key]).all().all() and np.allclose(a["diff"], b["diff"], equal_nan=True))


def answer(results: Results, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows the report opens with (empty when the sweep compared neither question's choices)."""
    return pd.DataFrame(versus_random(tables) + allocation_vs_method(results), columns=COLUMNS)
