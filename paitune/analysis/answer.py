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
  best and worst choice, the two named by the *other* seeds (``cross_validated_spread``) within
  each dataset x model group (``TRANSFER_GROUP``) on its own, the gaps averaged over the groups
  both factors were compared in: a method effect that flips between datasets matters in every
  group, and would cancel out in a ranking of the choices over all of them. An absolute
  difference would grow with noise and with a choice x seed interaction, this one has mean 0
  unless the effect reproduces. Its mean over seeds is what the sentence quotes. These per-seed
  values are not independent (each seed helps name the pairs for every other seed), so the
  verdict comes from sample splitting instead (``split_sample_test``): the pairs are named on
  half of the seeds and the allocation's gap minus the method's is t-tested over the other half,
  independent of the naming; the p-values of many such splits are combined by doubling their
  median (valid whatever their dependence). ``inconclusive`` when neither is shown to matter
  more.

Each answer is a row {question, subject, verdict, n_units, sentence}; the report prints the
sentences first, as one paragraph.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from paitune.analysis.common import p_text, points_text
from paitune.analysis.load import Results
from paitune.analysis.rankings import BUDGET_SUFFIX, TRANSFER_GROUP, context_scores, head_to_head, pair_table
from paitune.analysis.stats import ALPHA, MIN_UNITS, SEED, one_sided_t_p, quantile_aggregated_p

# Splits of the seeds into a naming half and a testing half: all of them up to this many, else
# this many drawn (fixed seed).
MAX_SPLITS = 256

RANDOM = "random"
COLUMNS = ["question", "subject", "verdict", "n_units", "sentence"]


def _budget_text(row) -> str:
    """Where some comparisons were made before the budget: what the pairs that ran it show."""
    same = row.n_units_budget == row.n_units and row.mean_diff_budget == row.mean_diff
    if same and row.p_adjusted_budget == row.p_adjusted:
        return ""  # every comparison was made at the budget: the same test
    seeds = f"{int(row.n_units_budget)} seed{'' if row.n_units_budget == 1 else 's'}"
    if not np.isfinite(row.p_adjusted_budget):
        return f"; pairs that ran the budget in {seeds}, no test below {MIN_UNITS}"
    return f"; at the budget {points_text(row.mean_diff_budget)} over {seeds}, Holm {p_text(row.p_adjusted_budget)}"


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
                f"is {side} random pruning at the same allocation on average, but not in every context or "
                "not in every dataset x model group on its own (pairwise: holds = "
                f"{_sign_text(getattr(row, 'holds', None))}, holds_budget = "
                f"{_sign_text(getattr(row, 'holds_budget', None))}; +1 / -1 where the lead / deficit holds)"
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
        budget_text = _budget_text(row)
        where = " where each pair met (the last epoch both reached)" if budget_text else ""
        sentence = (
            f"{row.choice} {claim}: {points_text(row.mean_diff)} test accuracy{where}, wins {row.win_rate:.0%} of its "
            f"head-to-head comparisons in {int(row.n_contexts)} blocks (context x allocation; {n} seeds, "
            + (f"Holm {p_text(row.p_adjusted)}" if np.isfinite(row.p_adjusted) else f"no test below {MIN_UNITS} seeds")
            + budget_text
            + ")"
        )
        if row.choice in shuffle.index:
            s = shuffle.loc[row.choice]
            s = s.iloc[0] if isinstance(s, pd.DataFrame) else s
            sentence += (
                f"; shuffling its mask within each layer (random pruning at its own layerwise density) "
                f"changes accuracy by {points_text(s['delta'])} ({s['verdict']})"
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


def _sign_text(sign) -> str:
    return "n/a" if sign is None or pd.isna(sign) else f"{int(sign):+d}" if sign else "0"


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


def _group_advantages(diffs: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Per dataset x model group of ``diffs`` (per seed and ordered pair, the mean accuracy
    difference over the group's blocks: ``pair_table(context_scores(...), "group_diffs")``), its seeds x
    choices advantage table (``_advantages``); a table without the group columns (as
    ``head_to_head`` gives) is one group, keyed ()."""
    if not len(diffs):
        return {}
    if not all(column in diffs.columns for column in TRANSFER_GROUP):
        return {(): _advantages(diffs)}
    keys = [diffs[column].astype(str) for column in TRANSFER_GROUP]  # a missing model is a level too
    return {key: _advantages(part) for key, part in diffs.groupby(keys, sort=True)}


def _aligned(diffs: dict[str, pd.DataFrame]) -> tuple[pd.Index, dict[str, list[np.ndarray]]]:
    """(seeds, per factor one seeds x choices advantage array per group): the dataset x model
    groups where every factor of ``diffs`` has 2 choices or more, the seeds present in all of
    them (sorted), each group's choices those present in all of its seeds."""
    groups = {
        factor: {key: table for key, table in _group_advantages(frame).items() if table.shape[1] >= 2}
        for factor, frame in diffs.items()
    }
    shared = sorted(set.intersection(*(set(tables) for tables in groups.values())))
    if not shared:
        return pd.Index([]), {factor: [] for factor in groups}
    seeds = None
    for tables in groups.values():
        for key in shared:
            seeds = tables[key].index if seeds is None else seeds.intersection(tables[key].index)
    seeds = seeds.sort_values()
    return seeds, {
        factor: [tables[key].reindex(seeds).to_numpy(np.float64) for key in shared] for factor, tables in groups.items()
    }


def _named_gaps(tables: list[np.ndarray], naming: np.ndarray) -> np.ndarray:
    """(rows of ``naming``, seeds): per row of ``naming`` (booleans over the seeds, true for the
    seeds that name the pairs), each seed's gap. In each group (a seeds x choices advantage
    table), the best and worst choice are the highest and lowest mean advantage over the naming
    seeds; the group's gap on a seed is that seed's advantage of the best minus that of the
    worst, and the seed's gap is the mean of its groups' gaps."""
    count = naming.sum(axis=1, keepdims=True)
    total = np.zeros((len(naming), tables[0].shape[0]))
    for values in tables:
        means = naming @ values / count
        best, worst = np.argmax(means, axis=1), np.argmin(means, axis=1)
        total += values[:, best].T - values[:, worst].T
    return total / len(tables)


def _spreads(tables: list[np.ndarray]) -> np.ndarray:
    """Per seed: its gap with each group's pair named by all the other seeds."""
    n = tables[0].shape[0]
    return np.diagonal(_named_gaps(tables, ~np.eye(n, dtype=bool))).copy()


def cross_validated_spread(diffs: pd.DataFrame) -> pd.Series:
    """Per seed: how much the factor matters, cross-validated over seeds. In each dataset x model
    group of ``diffs`` (``_group_advantages``; one group without the group columns) the best and
    the worst choice are named from the *other* seeds (their mean advantages); the seed's own
    accuracy difference between those two, averaged over the groups, is its value. A factor
    whose choices differ only by chance (or differently in every seed: a choice x seed
    interaction) has mean 0 however noisy; one with a reproducible effect in each group has the
    best-minus-worst gap in points, also where the best choice differs from group to group.
    (The values of different seeds are not independent: describe with their mean, test with
    ``split_sample_test``.)"""
    seeds, tables = _aligned({"factor": diffs})
    if len(seeds) < 2:
        return pd.Series(dtype=float)
    return pd.Series(_spreads(tables["factor"]), index=seeds)


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


def _as_groups(tables) -> list[np.ndarray]:
    """A seeds x choices array is one group; a list or tuple of them, one per group."""
    if isinstance(tables, (list, tuple)):
        return [np.asarray(table, np.float64) for table in tables]
    return [np.asarray(tables, np.float64)]


def split_sample_test(allocation, method) -> dict:
    """Does the allocation or the method matter more? Each factor's seeds x choices advantage
    table, or a list of them, one per dataset x model group (every table with the same seeds in
    the same order), in; {p, more, n_splits, n_groups, p_allocation, p_method} out.

    For each split of the seeds (``_naming_halves``), each factor's best and worst choice are
    named in each group by their mean advantage over the naming half; on every seed of the other
    half the factor's gap is the mean over groups of that seed's advantage of the group's best
    minus that of its worst, and the allocation's gap minus the method's is t-tested over those
    seeds (one-sided, each way). Given the naming half the tested seeds are independent and the
    pairs are fixed, so each split's p is valid; the splits' p-values are combined by
    ``quantile_aggregated_p`` (twice the median) and the two directions by Bonferroni: p = min(1,
    2 min(p_allocation, p_method)), ``more`` the direction of the smaller. Needs 3 seeds (1
    naming, 2 testing) and 2 choices of each factor in every group.
    """
    allocation, method = _as_groups(allocation), _as_groups(method)
    out = {"p": np.nan, "more": "", "n_splits": 0, "n_groups": len(allocation), "p_allocation": np.nan,
           "p_method": np.nan}  # fmt: skip
    if not allocation or not method:
        return out
    n = allocation[0].shape[0]
    if n < MIN_UNITS or any(table.shape[1] < 2 for table in allocation + method):
        return out
    naming = _naming_halves(n)
    k = int(naming[0].sum())
    diff = _named_gaps(allocation, naming) - _named_gaps(method, naming)
    tested = diff[~naming].reshape(len(naming), n - k)
    greater, less = one_sided_t_p(tested, axis=1)
    p_allocation, p_method = quantile_aggregated_p(greater), quantile_aggregated_p(less)
    return {
        "p": min(1.0, 2.0 * min(p_allocation, p_method)),
        "more": "allocation" if p_allocation <= p_method else "method",
        "n_splits": len(naming),
        "n_groups": len(allocation),
        "p_allocation": p_allocation,
        "p_method": p_method,
    }


def _group_diffs(results: Results, factor: str, *, budget: bool = False) -> pd.DataFrame:
    """Per dataset x model group, seed and ordered pair of choices: the mean accuracy difference
    over the group's blocks (``context_scores``); with ``budget``, over the pairs compared at the
    budget only."""
    return pair_table(
        context_scores(results, factor), "group_diffs" + (BUDGET_SUFFIX if budget else ""), pd.DataFrame()
    )


def _which_matters_more(diffs: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict | None]:
    """(per-seed cross-validated spreads of both factors, the split-sample test or None), both
    over the same dataset x model groups and seeds."""
    seeds, tables = _aligned(diffs)
    if len(seeds) < 2:
        return pd.DataFrame(columns=list(diffs)), None
    both = pd.DataFrame({factor: _spreads(tables[factor]) for factor in diffs}, index=seeds)
    return both, split_sample_test(*(tables[factor] for factor in diffs))


def allocation_vs_method(results: Results) -> list[dict]:
    factors = ("allocation", "method")
    h2h = {factor: head_to_head(results, factor) for factor in factors}
    both, test = _which_matters_more({factor: _group_diffs(results, factor) for factor in factors})
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
        end_both, end_test = _which_matters_more({f: _group_diffs(results, f, budget=True) for f in factors})
        shown = (
            end_test is not None and len(end_both) >= MIN_UNITS and end_test["p"] < ALPHA
            and end_test["more"] == verdict
        )  # fmt: skip
        end_p = p_text(end_test["p"]) if end_test is not None and np.isfinite(end_test["p"]) else "no test"
        how += f"; on the pairs that ran the budget ({len(end_both)} seeds) {end_p}"
        if not shown:
            verdict = f"{verdict}_at_rungs"
            claim += " where the pairs were compared (some at ASHA's rungs), not shown at the budget"
    groups = test["n_groups"]
    where = (
        "in the one dataset x model group"
        if groups == 1
        else f"in each of the {groups} dataset x model groups, the gaps averaged over the groups"
    )
    sentence = (
        f"{claim}: the best and worst allocation differ by {points_text(both['allocation'].mean())} (same method, "
        f"context and seed), the best and worst method by {points_text(both['method'].mean())} (same allocation), "
        f"each pair named by the other seeds {where} ({n} seeds{how})."
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
