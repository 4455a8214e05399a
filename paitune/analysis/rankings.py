"""Do rankings of PaI choices generalize across contexts?

A *factor* is what is compared: ``method``, ``allocation`` or ``method_x_allocation``. Choices are
compared only within a *block*: one context (dataset x model x sparsity x budget,
``paitune.analysis.common``) with the other factor held fixed (methods under the same allocation
and vice versa); control ``none`` only, the dense reference left out. Methods are not compared
under a searched allocation: there each method ran per-layer maps of its own (its config), so no
block holds the densities fixed (planted with no method effect and a map effect of 2 points sd,
"beats random" came out false in 24 of 100 rows); ``searched`` competes as an allocation and in
``method_x_allocation``. Two choices are compared at
the last epoch *both* of their trials reached (the epochs table has every epoch), so an
ASHA-stopped trial meets each rival at the epoch it was stopped, never dropped, and two trials
that both ran the budget meet at its end. (``acc``, and the regret and transfer numbers built on
it, are each trial's accuracy at the context's *common epoch*, the last epoch every trial of the
context reached.) Where a choice ran
several configs in a context (e.g. learning rates) the one with the best validation accuracy is
used, and its test accuracy is compared.

The unit of replication is the **seed**: contexts that share a seed share its draws (data order,
initialization), so they are not independent. Within each (block, seed) a choice's *win score*
is the share of the other choices present that it beats (ties half), each pair at the last epoch
both reached. Each seed contributes one number per choice: its mean win score over the blocks of
that seed. Then:

- ``win_rate`` = mean over seeds of that number, with a Student-t 95% CI over seeds;
  ``n_units`` = seeds, ``n_contexts`` = blocks behind them.
- The Friedman test (seeds as blocks, on the per-seed win scores; scipy) asks whether any choice
  differs. Every pair is then tested head to head: a paired t-test over seeds of the per-seed
  mean test-accuracy difference between the two (over the blocks they share, each at the last
  epoch both reached), Holm-adjusted over the k (k - 1) / 2 pairs. (A rank-based post-hoc test
  on the win scores, such as Conover's, cannot separate a choice that is always first from one
  that is usually second at five seeds: the ranks have no more to give. The accuracy differences
  do, and they answer the question asked: is A better than B where both ran?)
- ``p_adjusted`` = the largest Holm-adjusted pairwise p between the choice and any other choice
  (what a robust verdict needs below 0.05); ``n_ahead`` / ``n_behind`` = how many other choices
  it is significantly ahead of / behind.
- The same head-to-head tests over the pairs that both ran the budget alone
  (``p_adjusted_budget``; ``budget_share`` = the share of the choice's comparisons made there). A
  pair compared at a rung (ASHA stopped one of the two) shows where they stood there: a choice
  that only learns faster leads at every rung.

Verdict rules (first that applies), per choice:
- ``too_few_runs``: fewer than MIN_UNITS seeds hold every choice, or fewer than two choices.
- ``robust_winner``: the Friedman p is below 0.05, the choice is significantly ahead of *every*
  other choice (Holm-adjusted pairwise p < 0.05, higher mean win score), and the lead holds in
  blocks the two share: ahead (mean difference over seeds >= 0) in every one, or by a one-sided
  Wilcoxon signed-rank test over the blocks (``block_signs``). A choice far ahead in one context
  and behind in the rest is ahead on average over seeds, but not robustly. And the lead is shown
  in every dataset x model group the two share, each on its own (one-sided paired t-test over
  seeds at ALPHA): a lead in one dataset and none in another is not one that transfers. All of
  this over every comparison and over the pairs that ran the budget (an intersection-union test).
- ``ahead_at_rungs``: the same over every comparison, not over the pairs that ran the budget.
- ``robust_loser`` / ``behind_at_rungs``: the same, behind every other choice.
- ``context_dependent``: its per-seed win scores differ between the levels of some context
  variable (Friedman across levels with seeds as blocks, or a paired t-test for two levels,
  p below 0.05 / (variables x choices): Bonferroni; a seed whose win scores tie at every level
  is no evidence, and when every seed ties Friedman's p is 1) and it is ahead of the field at some level
  (the one-sided t-interval over seeds of its win rate there above 0.5, Bonferroni over the
  levels checked), over every comparison and over those made at the budget.
- ``no_difference``: equivalent to the field: the 90% t-interval of its win rate lies inside
  0.5 +/- WIN_MARGIN (two one-sided tests at 5%), its accuracy within ACCURACY_MARGIN of every
  rival's in every dataset x model group (TOST over seeds, each pair and group on its own), and
  it is significantly ahead of or behind no choice (a mid-field choice, ahead of one and behind another, also wins half its comparisons);
  both over every comparison and over the pairs that ran the budget.
- ``inconclusive``: none of the above (it may be significantly ahead of some choices and behind
  others: ``n_ahead`` / ``n_behind`` say).

Longer than the other modules: the blocks built here (a context with the other factor held fixed)
are what every ranking number, test and transfer score of this section is computed over.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import friedmanchisquare
from scipy.stats import t as student_t

from paitune.analysis.common import (
    DENSE_METHOD,
    TRANSFER_GROUP,
    at_budget,
    at_last_shared_epoch,
    scored_trials,
    scoring_meta,
)
from paitune.analysis.load import Results
from paitune.analysis.stats import (
    ACCURACY_MARGIN,
    ALPHA,
    MIN_UNITS,
    N_BOOT,
    SEED,
    all_equal_p,
    grouped_t_test,
    holm,
    kendalls_w,
    t_test_p,
)
from paitune.spaces.check import SEARCHED_ALLOCATION

FACTORS = {
    "method": ["allocation"],
    "allocation": ["method"],
    "method_x_allocation": [],
}
VERDICTS = (
    "robust_winner",
    "ahead_at_rungs",
    "context_dependent",
    "no_difference",
    "inconclusive",
    "behind_at_rungs",
    "robust_loser",
    "too_few_runs",
)
WIN_MARGIN = 0.1  # equivalence margin on the win rate for no_difference
SLICE_COLUMNS = ["dataset", "model", "sparsity", "max_epochs"]
BUDGET_SUFFIX = "_budget"  # the same comparison, over the pairs compared at the budget only


_SCORES: dict[tuple[int, str], tuple[Results, pd.DataFrame]] = {}


class _PairTables(dict):
    """The head-to-head tables derived with a ``context_scores`` frame, kept in its attrs under
    PAIR_TABLES. pandas deep-copies a frame's attrs into every frame derived from it (each column
    pick, groupby or merge); these tables never change, so the copy is the same object."""

    def __deepcopy__(self, memo):
        return self


PAIR_TABLES = "pair_tables"


def pair_table(scores: pd.DataFrame, name: str, default=None):
    """One table derived with ``scores`` (``_pairwise_win_scores``), ``default`` where absent."""
    return scores.attrs.get(PAIR_TABLES, {}).get(name, default)


def context_scores(results: Results, factor: str) -> pd.DataFrame:
    """One row per (block, seed, choice): {ctx, seed, choice, acc, rank, k, win_score, regret}
    plus the block's context columns; ``ctx`` numbers the blocks."""
    cached = _SCORES.get((id(results), factor))
    if cached is not None and cached[0] is results:
        return cached[1]
    if any(r is not results for r, _ in _SCORES.values()):
        _SCORES.clear()  # one Results at a time
    scores = _context_scores(results, factor)
    _SCORES[(id(results), factor)] = (results, scores)
    return scores


def _context_scores(results: Results, factor: str) -> pd.DataFrame:
    scored = scored_trials(results)
    rows = scored.loc[scored["selected"] & (scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
    if factor == "method":
        # Under a searched allocation each method ran maps of its own: no block holds the layerwise
        # densities fixed, and a map's effect, the same in every seed, would read as the method's.
        rows = rows.loc[rows["allocation"] != SEARCHED_ALLOCATION]
    if factor == "method_x_allocation":
        choice = rows["method"].astype(str) + "/" + rows["allocation"].astype(str)
    else:
        choice = rows[factor].astype(str)
    # A block is the context (as the sweep defines it) with the other factor fixed; the context's
    # descriptive columns (slices) are carried along, never used to split it.
    keys = ["context"] + FACTORS[factor]
    frame = rows[keys + SLICE_COLUMNS + ["seed"]].assign(choice=choice.to_numpy(), acc=rows["acc"].to_numpy())
    scores = (
        frame.groupby(keys + ["seed", "choice"], dropna=False, observed=True)
        .agg(acc=("acc", "mean"), **{c: (c, "first") for c in SLICE_COLUMNS})
        .reset_index()
    )
    scores["ctx"] = scores.groupby(keys, dropna=False, observed=True).ngroup()
    cell = ["ctx", "seed"]
    scores["k"] = scores.groupby(cell)["choice"].transform("size")
    scores = scores.loc[scores["k"] >= 2].copy()
    scores = scores.reset_index(drop=True)
    scores["win_score"] = _pairwise_win_scores(results, frame.assign(tix=rows["tix"].to_numpy(),
                                               reached=rows["reached"].to_numpy()), scores, keys)  # fmt: skip
    scores["rank"] = scores["k"] - scores["win_score"] * (scores["k"] - 1)
    scores["regret"] = scores.groupby(cell)["acc"].transform("max") - scores["acc"]
    return scores


def _pairwise_win_scores(results: Results, trials: pd.DataFrame, scores: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Each (block, seed, choice)'s win score from pairwise comparisons, each pair of choices at
    the last epoch *both* reached: an ASHA-stopped trial meets a survivor where both have an
    accuracy, and two survivors meet at their full budget (a context-wide common epoch would
    compare everyone at the first rung). Test accuracy decides; a tie counts half. Also keeps,
    per seed and ordered pair, the mean win and accuracy difference over the blocks they share
    (``head_to_head``), and the same over the pairs compared at the budget alone (both trials
    ran it: ``head_to_head(budget=True)``), which a claim about the budget rests on."""
    one = (
        trials.groupby(keys + ["seed", "choice"], dropna=False, observed=True, sort=False)
        .agg(tix=("tix", "first"), reached=("reached", "first"), max_epochs=("max_epochs", "first"))
        .reset_index()
    )
    one = one.merge(scores[keys + ["seed", "choice", "ctx"]], on=keys + ["seed", "choice"])
    pairs = one.merge(one.drop(columns="max_epochs"), on=["ctx", "seed"], suffixes=("_a", "_b"))
    pairs = pairs.loc[pairs["choice_a"] != pairs["choice_b"]]
    epoch, acc_a, acc_b = at_last_shared_epoch(
        results, pairs["tix_a"].to_numpy(), pairs["reached_a"].to_numpy(np.float64),
        pairs["tix_b"].to_numpy(), pairs["reached_b"].to_numpy(np.float64),
    )  # fmt: skip
    valid = np.isfinite(acc_a) & np.isfinite(acc_b)
    win = np.where(acc_a > acc_b, 1.0, np.where(acc_a == acc_b, 0.5, 0.0))
    win[~valid] = np.nan
    final = at_budget(epoch, pairs["max_epochs"].to_numpy(np.float64))
    pairs = pairs.assign(win=win, diff=np.where(valid, acc_a - acc_b, np.nan), final=final)
    mean = pairs.groupby(["ctx", "seed", "choice_a"])["win"].mean()
    derived = scores.attrs[PAIR_TABLES] = _PairTables()
    group_of = scores.groupby("ctx")[TRANSFER_GROUP].first()
    for suffix, kept in (("", pairs.loc[valid]), (BUDGET_SUFFIX, pairs.loc[valid & final])):
        derived["head_to_head" + suffix] = (
            kept.groupby(["seed", "choice_a", "choice_b"])
            .agg(win=("win", "mean"), diff=("diff", "mean"), n_blocks=("ctx", "nunique"))
            .reset_index()
            .rename(columns={"choice_a": "choice", "choice_b": "opponent"})
        )
        # Per block and ordered pair: the mean difference over seeds (does the lead hold in each?).
        derived["block_diffs" + suffix] = (
            kept.groupby(["ctx", "choice_a", "choice_b"])["diff"].mean().rename("diff").reset_index()
            .rename(columns={"choice_a": "choice", "choice_b": "opponent"})
        )  # fmt: skip
        # Per transfer group, seed and ordered pair: the mean difference over the group's blocks
        # (is the lead shown in every dataset x model?).
        derived["group_diffs" + suffix] = (
            kept.assign(**{c: kept["ctx"].map(group_of[c]) for c in TRANSFER_GROUP})
            .groupby([*TRANSFER_GROUP, "seed", "choice_a", "choice_b"], dropna=False)["diff"].mean().reset_index()
            .rename(columns={"choice_a": "choice", "choice_b": "opponent"})
        )  # fmt: skip
    # Per (block, seed, choice): its win score over the rivals it met at the budget; per choice,
    # the share of its comparisons made there.
    at_end = pairs.loc[valid & final].groupby(["ctx", "seed", "choice_a"])["win"].mean()
    index = pd.MultiIndex.from_frame(scores[["ctx", "seed", "choice"]])
    scores["win_score_budget"] = at_end.reindex(index).to_numpy(np.float64)
    counted = pairs.loc[valid].groupby("choice_a")["final"].agg(["size", "sum"])
    derived["budget_share"] = (counted["sum"] / counted["size"]).rename("budget_share")
    return mean.reindex(index).to_numpy(np.float64)


def head_to_head(results: Results, factor: str, *, budget: bool = False) -> pd.DataFrame:
    """Per seed and ordered pair of choices: {seed, choice, opponent, win, diff, n_blocks}: the
    share of the blocks they share where ``choice`` beat ``opponent`` (ties half) and the mean
    test-accuracy difference, each pair at the last epoch both trials reached; with ``budget``,
    over the pairs compared at the budget only (both trials ran it)."""
    scores = context_scores(results, factor)
    return pair_table(
        scores,
        "head_to_head" + (BUDGET_SUFFIX if budget else ""),
        pd.DataFrame(columns=["seed", "choice", "opponent", "win", "diff", "n_blocks"]),
    )


def block_signs(results: Results, factor: str, *, budget: bool = False) -> pd.DataFrame:
    """choices x opponents: +1 where the choice's lead over the opponent holds, -1 where its
    deficit does, 0 otherwise. A lead holds when both:

    - across the blocks the two share: the choice is ahead of (or level with) the opponent, on
      average over seeds, in every shared block, or a one-sided Wilcoxon signed-rank test over
      the blocks (each block one unit, its mean difference over seeds) puts it ahead at ALPHA: a
      lead that vanishes in a few blocks where the two are close still generalizes, one far ahead
      in a single context and behind in the rest does not (4 blocks can never reach ALPHA by the
      test; then every block must agree);
    - in every dataset x model group the two share (``TRANSFER_GROUP``), on its own: the paired
      t-test over seeds of the mean difference over the group's blocks puts the choice ahead at
      ALPHA (two-sided p, on MIN_UNITS seeds or more). Without it a lead in one dataset, with the
      other dataset's blocks tied by noise, passes the test over blocks (planted: +3 points on
      one dataset, 0 on the other, robust_winner in 20 of 20 tables); with it, 0 of 20.

    With ``budget``, over the pairs compared at the budget only."""
    suffix = BUDGET_SUFFIX if budget else ""
    scores = context_scores(results, factor)
    cached = pair_table(scores, "block_signs" + suffix)
    if cached is None:  # the rankings and the pairwise table both ask
        cached = scores.attrs[PAIR_TABLES]["block_signs" + suffix] = _block_signs(scores, suffix)
    return cached


def _block_signs(scores: pd.DataFrame, suffix: str) -> pd.DataFrame:
    from scipy.stats import wilcoxon

    diffs = pair_table(scores, "block_diffs" + suffix)
    if diffs is None or diffs.empty:
        return pd.DataFrame()
    signs = {}
    for (choice, opponent), values in diffs.groupby(["choice", "opponent"])["diff"]:
        d = values.to_numpy(np.float64)
        ahead, behind = bool((d >= 0).all()), bool((d <= 0).all())
        if not (ahead or behind) and np.count_nonzero(d) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ahead = wilcoxon(d, alternative="greater").pvalue < ALPHA
                behind = wilcoxon(d, alternative="less").pvalue < ALPHA
        signs[(choice, opponent)] = int(ahead) - int(behind)  # level everywhere: 0
    sign = pd.Series(signs, dtype=np.int64)
    sign.index.names = ["choice", "opponent"]
    shown = _shown_in_every_group(pair_table(scores, "group_diffs" + suffix)).reindex(sign.index)
    return sign.where(sign == shown, 0).unstack("opponent")


def _shown_in_every_group(group_diffs: pd.DataFrame) -> pd.Series:
    """Per ordered pair: +1 where the choice is significantly ahead (paired t over seeds, ALPHA)
    in every dataset x model group the two share, -1 where it is significantly behind in every
    one, 0 otherwise."""
    tests = grouped_t_test(group_diffs, ["choice", "opponent", *TRANSFER_GROUP], "diff")
    # One-sided at ALPHA (half the two-sided p, in the direction of the mean): each group is one
    # part of an intersection-union test, valid at ALPHA without adjusting over the groups.
    shown = (tests["n_units"] >= MIN_UNITS) & (tests["p"] / 2 < ALPHA)
    tests = tests.assign(ahead=shown & (tests["mean"] > 0), behind=shown & (tests["mean"] < 0))
    every = tests.groupby(["choice", "opponent"])[["ahead", "behind"]].all()
    return every["ahead"].astype(np.int64) - every["behind"].astype(np.int64)


def _unit_matrix(scores: pd.DataFrame, value: str = "win_score") -> pd.DataFrame:
    """seeds x choices: each seed's mean over its blocks (NaN where the seed lacks the choice)."""
    return scores.groupby(["seed", "choice"])[value].mean().unstack("choice")


def pairwise_tests(matrix: pd.DataFrame, h2h: pd.DataFrame) -> tuple[float, pd.DataFrame, int]:
    """(Friedman p, Holm-adjusted pairwise p matrix, complete seeds).

    The Friedman test (seeds as blocks) runs on the seeds x choices matrix of per-seed win
    scores: does any choice differ? Each pair is then tested head to head (``pair_p_matrix``).
    Seeds missing a choice are left out of the Friedman test."""
    complete = matrix.dropna(axis=0, how="any")
    choices = list(matrix.columns)
    n, k = complete.shape
    if n < MIN_UNITS or k < 2:
        return float("nan"), pd.DataFrame(np.nan, index=choices, columns=choices), n
    p_matrix = pair_p_matrix(h2h, choices)
    friedman = _friedman(complete.to_numpy(dtype=np.float64)) if k > 2 else float(p_matrix.iloc[0, 1])
    return friedman, p_matrix, n


def pair_p_matrix(h2h: pd.DataFrame, choices: list[str]) -> pd.DataFrame:
    """choices x choices: each pair tested head to head, a paired t-test over seeds of the
    per-seed mean test-accuracy difference between the two (``head_to_head``), Holm-adjusted over
    the pairs tested; NaN for a pair with fewer than MIN_UNITS seeds."""
    k = len(choices)
    p_matrix = pd.DataFrame(np.nan, index=choices, columns=choices)
    raw, index = [], []
    per_pair = (
        {key: d.to_numpy(np.float64) for key, d in h2h.groupby(["choice", "opponent"], sort=False)["diff"]}
        if len(h2h)
        else {}
    )
    for i in range(k):
        for j in range(i + 1, k):
            diffs = per_pair.get((choices[i], choices[j]), np.zeros(0))
            raw.append(t_test_p(diffs) if len(diffs) >= MIN_UNITS else np.nan)
            index.append((i, j))
    raw = np.asarray(raw, dtype=np.float64)
    adjusted = np.full(len(raw), np.nan)
    ok = np.isfinite(raw)
    adjusted[ok] = holm(raw[ok])
    for (i, j), p in zip(index, adjusted):
        p_matrix.iloc[i, j] = p_matrix.iloc[j, i] = p
    for i in range(k):
        p_matrix.iloc[i, i] = 1.0
    return p_matrix


def _friedman(values: np.ndarray) -> float:
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        if np.ptp(values, axis=1).max() == 0:  # every seed ties every choice
            return 1.0
        p = float(friedmanchisquare(*values.T).pvalue)
    return _tied_blocks_p(p)


def _tied_blocks_p(p: float) -> float:
    """Friedman's p, where scipy's NaN means every block ties every level (its tie correction is
    0): no block ranks anything above anything else, so no evidence of a difference: p = 1."""
    return p if np.isfinite(p) else 1.0


def _slice_columns(scores: pd.DataFrame, factor: str) -> list[str]:
    if scores.empty:
        return []
    candidates = SLICE_COLUMNS + FACTORS[factor]
    return [c for c in candidates if scores[c].nunique(dropna=False) > 1]


def _win_rate_test(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """``grouped_t_test`` of a win rate of 0.5 over seeds, its t-interval cut to [0, 1], the range a
    win rate lives in (the tests use ``sd``, not the interval)."""
    table = grouped_t_test(frame, by, value, null=0.5)
    table[["ci_low", "ci_high"]] = table[["ci_low", "ci_high"]].clip(0.0, 1.0)
    return table


def slice_win_rates(scores: pd.DataFrame, factor: str, value: str = "win_score") -> pd.DataFrame:
    """Win rate of each choice within each slice (the contexts at one level of one context
    variable): {choice, slice, level, n, n_units, mean, sd, ci_low, ci_high, p}; n = blocks, CI over
    seeds (within [0, 1]), sd = over seeds, p = two-sided t-test p of a win rate of 0.5
    (unadjusted). ``value="win_score_budget"``: over the comparisons made at the budget only."""
    names = ["choice", "slice", "level", "n", "n_units", "mean", "sd", "ci_low", "ci_high", "p"]
    parts = []
    for column in _slice_columns(scores, factor):
        frame = scores.assign(level=scores[column].astype(str))
        per_seed = frame.groupby(["choice", "level", "seed"])[value].mean().rename("w").reset_index()
        table = _win_rate_test(per_seed, ["choice", "level"], "w")
        blocks = frame.groupby(["choice", "level"])["ctx"].nunique().rename("n").reset_index()
        parts.append(table.merge(blocks, on=["choice", "level"]).assign(slice=column))
    if not parts:
        return pd.DataFrame(columns=names)
    return pd.concat(parts, ignore_index=True)[names]


def heterogeneity(scores: pd.DataFrame, factor: str) -> pd.Series:
    """Per choice: the smallest p, over the slice variables, of the test that its per-seed win
    score is the same at every level (Friedman with seeds as blocks; paired t for two levels)."""
    p_values: dict[str, float] = {}
    columns = _slice_columns(scores, factor)
    for choice, group in scores.groupby("choice"):  # choices x variables tests: a handful
        best = np.nan
        for column in columns:
            matrix = group.groupby(["seed", column])["win_score"].mean().unstack(column).dropna()
            if len(matrix) < MIN_UNITS or matrix.shape[1] < 2:
                continue
            values = matrix.to_numpy(dtype=np.float64)
            if np.ptp(values) == 0:
                continue
            if values.shape[1] == 2:
                p = t_test_p(values[:, 0] - values[:, 1])
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p = _tied_blocks_p(float(friedmanchisquare(*values.T).pvalue))
            best = p if np.isnan(best) else min(best, p)
        p_values[choice] = best
    return pd.Series(p_values, dtype=np.float64)


@dataclass(frozen=True)
class Evidence:
    """One set of head-to-head comparisons: each pair's Holm-adjusted p (``pair_p_matrix``), its
    mean accuracy difference (choices x opponents) and whether the lead holds across the blocks
    (``block_signs``)."""

    p_matrix: pd.DataFrame
    direction: pd.DataFrame | None
    signs: pd.DataFrame | None

    def standing(self, choice: str, others: list[str]) -> tuple[int, int, pd.Series, float]:
        """(rivals it is significantly ahead of, rivals significantly ahead of it, the held sign
        per rival, largest adjusted p)."""
        if not others:
            return 0, 0, pd.Series(dtype=np.int64), np.nan
        p_row = self.p_matrix.reindex(index=[choice], columns=others).iloc[0]
        significant = p_row < ALPHA
        if self.direction is not None and choice in self.direction.index:
            sign = self.direction.loc[choice].reindex(others).fillna(0.0)
        else:
            sign = pd.Series(0.0, index=others)
        held = (
            self.signs.loc[choice].reindex(others).fillna(0)
            if self.signs is not None and not self.signs.empty and choice in self.signs.index
            else pd.Series(0, index=others)
        )
        p_max = float(p_row.max()) if p_row.notna().all() else np.nan
        return int((significant & (sign > 0)).sum()), int((significant & (sign < 0)).sum()), held, p_max


def _evidence(results: Results, factor: str, choices: list[str], p_matrix: pd.DataFrame, budget: bool) -> Evidence:
    h2h = head_to_head(results, factor, budget=budget)
    if budget:
        p_matrix = pair_p_matrix(h2h, choices)
    direction = h2h.groupby(["choice", "opponent"])["diff"].mean().unstack("opponent") if len(h2h) else None
    return Evidence(p_matrix, direction, block_signs(results, factor, budget=budget))


def _equivalent(table: pd.DataFrame, choices: list[str]) -> pd.Series:
    """Per choice: the 90% t-interval over seeds of its win rate lies inside 0.5 +/- WIN_MARGIN
    (two one-sided tests at ALPHA), on MIN_UNITS seeds or more."""
    table = table.set_index("choice").reindex(choices)
    n = table["n_units"].fillna(0).to_numpy(np.float64)
    q = student_t.ppf(1 - ALPHA, np.maximum(n - 1, 1))
    se = table["sd"].fillna(0).to_numpy() / np.sqrt(np.maximum(n, 1))
    mean = table["win_rate"].to_numpy(np.float64)
    inside = (mean - q * se > 0.5 - WIN_MARGIN) & (mean + q * se < 0.5 + WIN_MARGIN) & (n >= MIN_UNITS)
    # Seeds that all agree (sd 0) give a zero-width interval: the exact one-sided sign-flip p
    # decides there, as in every other test of the analysis (``stats.all_equal_p``).
    flat = se <= 1e-12
    inside &= ~flat | (all_equal_p(n, sides=1) < ALPHA)
    return pd.Series(inside, index=choices)


def _matches_every_rival_in_every_group(scores: pd.DataFrame, choices: list[str], budget: bool) -> pd.Series:
    """Per choice: its test accuracy is within ACCURACY_MARGIN of every rival's in every dataset x
    model group they share, each shown on its own (TOST over seeds of the group's mean difference,
    MIN_UNITS seeds or more; an intersection-union test). A win rate of 0.5 against the field also
    comes from +2 points on one dataset and -2 on another, or from being ahead of one rival and
    behind another by the same margin."""
    diffs = pair_table(scores, "group_diffs" + (BUDGET_SUFFIX if budget else ""))
    if diffs is None or diffs.empty:
        return pd.Series(False, index=choices)
    tests = grouped_t_test(diffs, ["choice", "opponent", *TRANSFER_GROUP], "diff", margin=ACCURACY_MARGIN)
    shown = (tests["n_units"] >= MIN_UNITS) & (tests["p_equivalent"] < ALPHA)
    return shown.groupby(tests["choice"]).all().reindex(choices).fillna(False).astype(bool)


def _ahead_somewhere(slices: pd.DataFrame, slices_budget: pd.DataFrame) -> pd.Series:
    """Per choice: its win rate is significantly above 0.5 at some level of some context variable,
    both over every comparison and over the comparisons made at the budget: the one-sided
    t-interval over seeds at each level, at level 1 - ALPHA / m for the m levels (of every
    variable) checked for the choice (Bonferroni: "at some level" is a claim about the best of
    them). A level where every seed has the same win rate has a zero-width interval there: a
    choice that wins every comparison of every seed at a level is ahead at it (the chance of that
    without an effect is (1/k)^seeds among k choices, not a sign flip's 1/2^seeds)."""
    keys = ["choice", "slice", "level"]
    if not len(slices) or not len(slices_budget):
        return pd.Series(dtype=bool)

    def ahead(table: pd.DataFrame) -> pd.DataFrame:
        n = table["n_units"].to_numpy(np.float64)
        dof = np.maximum(n - 1.0, 1.0)
        se = table["sd"].fillna(0.0).to_numpy(np.float64) / np.sqrt(np.maximum(n, 1.0))
        checked = table.groupby("choice")["level"].transform("size").to_numpy(np.float64)
        low = table["mean"].to_numpy(np.float64) - student_t.ppf(1.0 - ALPHA / checked, dof) * se
        return table.loc[(low > 0.5) & (n >= 2), keys]

    both = ahead(slices).merge(ahead(slices_budget))
    return pd.Series(True, index=both["choice"].unique(), dtype=bool)


def _verdicts(
    overall: pd.DataFrame,
    slices: pd.DataFrame,
    slices_budget: pd.DataFrame,
    friedman_p: float,
    n_complete: int,
    n_variables: int,
    compared: Evidence,
    at_end: Evidence,
    equivalent: pd.Series,
) -> pd.DataFrame:
    """``compared``: every pair at the last epoch both reached; ``at_end``: the pairs that both ran
    the budget. A robust verdict is a claim about the budget: it needs the lead shown both where
    the choices were compared and at the budget (an intersection-union test: each part at ALPHA).
    Where it holds only at ASHA's rungs (a rival was stopped there, or the lead is not shown among
    the pairs that ran the budget), the choice is ``ahead_at_rungs`` / ``behind_at_rungs``."""
    choices = list(overall["choice"])
    n_choices = len(choices)
    # Significantly ahead of the field at some level (t-interval over seeds above 0.5), over every
    # comparison and over those made at the budget, at the same level.
    ahead_any = _ahead_somewhere(slices, slices_budget)
    threshold = ALPHA / max(1, n_variables * n_choices)
    gate = np.isfinite(friedman_p) and friedman_p < ALPHA
    verdicts, ahead_counts, behind_counts, p_adjusted, p_budget = [], [], [], [], []
    for row in overall.itertuples():  # one row per choice: a handful
        others = [c for c in choices if c != row.choice]
        ahead, behind, held, p_max = compared.standing(row.choice, others)
        end_ahead, end_behind, end_held, end_p_max = at_end.standing(row.choice, others)
        ahead_counts.append(ahead)
        behind_counts.append(behind)
        p_adjusted.append(p_max)
        p_budget.append(end_p_max)
        # Robust: the lead (or deficit) holds in every block the pair shares, not only on average
        # over them: a choice far ahead in one context and behind in the rest is not robust.
        leads = gate and ahead == len(others) and bool((held > 0).all())
        trails = gate and behind == len(others) and bool((held < 0).all())
        if n_complete < MIN_UNITS or n_choices < 2:
            verdicts.append("too_few_runs")
        elif leads:
            shown = end_ahead == len(others) and bool((end_held > 0).all())
            verdicts.append("robust_winner" if shown else "ahead_at_rungs")
        elif trails:
            shown = end_behind == len(others) and bool((end_held < 0).all())
            verdicts.append("robust_loser" if shown else "behind_at_rungs")
        elif row.heterogeneity_p < threshold and ahead_any.get(row.choice, False):
            verdicts.append("context_dependent")
        elif equivalent[row.choice] and ahead == behind == end_ahead == end_behind == 0:
            # Equivalent to the field *and* to each choice in it (a mid-field choice, ahead of one
            # rival and behind another, averages to 0.5 without matching anyone), at the budget.
            verdicts.append("no_difference")
        else:
            verdicts.append("inconclusive")
    return pd.DataFrame(
        {
            "verdict": verdicts,
            "n_ahead": ahead_counts,
            "n_behind": behind_counts,
            "p_adjusted": p_adjusted,
            "p_adjusted_budget": p_budget,
        },
        index=overall.index,
    )


COLUMNS = [
    "factor",
    "choice",
    "mean_rank",
    "win_rate",
    "ci_low",
    "ci_high",
    "n_contexts",
    "n_units",
    "verdict",
    "p_adjusted",
    "p_adjusted_budget",
    "budget_share",
    "friedman_p",
    "n_ahead",
    "n_behind",
    "best_share",
    "mean_regret",
    "mean_acc",
    "heterogeneity_p",
    "completion_rate",
    "n_dropped_contexts",
]


def rank_choices(
    results: Results,
    factor: str,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    with_slices: bool = False,
    with_tests: bool = False,
):
    """Per choice: {factor, choice, mean_rank, win_rate, ci_low, ci_high, n_contexts, n_units,
    verdict, p_adjusted, ...} (see the module docstring). With ``with_slices`` also returns the
    per-slice win rates; with ``with_tests`` also the pairwise p matrix and mean Friedman ranks
    (the diagram takes the p matrix and the table's mean_rank). ``n_boot`` / ``seed`` are accepted for compatibility:
    the intervals are t-intervals over seeds, nothing is resampled."""
    scores = context_scores(results, factor)
    extras = []
    if scores.empty:
        empty = pd.DataFrame(columns=COLUMNS)
        if with_slices:
            extras.append(slice_win_rates(scores, factor))
        if with_tests:
            extras.append({"p_matrix": pd.DataFrame(), "ranks": pd.Series(dtype=float), "friedman_p": np.nan})
        return (empty, *extras) if extras else empty
    matrix = _unit_matrix(scores)
    h2h = head_to_head(results, factor)
    friedman_p, p_matrix, n_complete = pairwise_tests(matrix, h2h)
    per_seed = matrix.stack().rename("w").reset_index()
    overall = _win_rate_test(per_seed, ["choice"], "w").rename(columns={"mean": "win_rate"})
    stats = (
        scores.groupby("choice")
        .agg(
            mean_rank=("rank", "mean"),
            best_share=("regret", lambda r: float((r == 0).mean())),
            mean_regret=("regret", "mean"),
            mean_acc=("acc", "mean"),
            n_contexts=("ctx", "nunique"),
        )
        .reset_index()
    )
    overall = overall.merge(stats, on="choice")
    slices = slice_win_rates(scores, factor)
    overall["heterogeneity_p"] = overall["choice"].map(heterogeneity(scores, factor))
    overall["friedman_p"] = friedman_p
    choices = list(overall["choice"])
    # no_difference is an equivalence claim: shown over every comparison and over those made at
    # the budget (per seed, its win score against the rivals it met there).
    at_end = _unit_matrix(scores, "win_score_budget").stack().rename("w").reset_index()
    at_end = grouped_t_test(at_end, ["choice"], "w", null=0.5).rename(columns={"mean": "win_rate"})
    equivalent = _equivalent(overall, choices) & _equivalent(at_end, choices)
    equivalent &= _matches_every_rival_in_every_group(scores, choices, budget=False)
    equivalent &= _matches_every_rival_in_every_group(scores, choices, budget=True)
    verdicts = _verdicts(
        overall, slices, slice_win_rates(scores, factor, "win_score_budget"), friedman_p, n_complete,
        len(_slice_columns(scores, factor)),
        _evidence(results, factor, choices, p_matrix, budget=False),
        _evidence(results, factor, choices, p_matrix, budget=True),
        equivalent,
    )  # fmt: skip
    overall["budget_share"] = overall["choice"].map(pair_table(scores, "budget_share", pd.Series(dtype=float)))
    overall = pd.concat([overall, verdicts], axis=1)
    overall = overall.merge(_completion(results, factor), on="choice", how="left")
    overall["factor"] = factor
    overall = overall[COLUMNS].sort_values("win_rate", ascending=False).reset_index(drop=True)
    if with_slices:
        extras.append(slices)
    if with_tests:
        complete = matrix.dropna()
        ranks = complete.rank(axis=1, ascending=False).mean() if len(complete) else pd.Series(dtype=float)
        extras.append({"p_matrix": p_matrix, "ranks": ranks, "friedman_p": friedman_p})
    return (overall, *extras) if extras else overall


def _choice(frame: pd.DataFrame, factor: str) -> pd.Series:
    if factor == "method_x_allocation":
        return frame["method"].astype(str) + "/" + frame["allocation"].astype(str)
    return frame[factor].astype(str)


def _completion(results: Results, factor: str) -> pd.DataFrame:
    """Per choice: share of its trials (control none) that ran their full budget, and contexts
    where it ran but that could not be compared (no accuracy at the common epoch, or alone)."""
    trials = results.trials
    trials = trials.loc[(trials["control"] == "none") & (trials["method"] != DENSE_METHOD)]
    compared = context_scores(results, factor)
    counts = pd.DataFrame(
        {"choice": _choice(trials, factor).to_numpy(), "completed": (trials["status"] == "completed").to_numpy()}
    )
    rate = counts.groupby("choice")["completed"].mean().rename("completion_rate")
    all_contexts = pd.DataFrame(
        {"choice": _choice(trials, factor).to_numpy(), "context": _context_ids(results, trials)}
    ).drop_duplicates()
    kept = compared[["choice", "context"]].drop_duplicates().assign(_kept=True)
    merged = all_contexts.merge(kept, on=["choice", "context"], how="left")
    dropped = (~merged["_kept"].eq(True)).groupby(merged["choice"]).sum().rename("n_dropped_contexts")
    return pd.concat([rate, dropped], axis=1).reset_index().rename(columns={"index": "choice"})


def _context_ids(results: Results, trials: pd.DataFrame) -> np.ndarray:
    from paitune.analysis.common import context_of

    return context_of(trials).to_numpy()


def pairwise_win_rates(
    results: Results, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED, p_matrix: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per ordered pair: share of the shared (block, seed) comparisons, each at the last epoch
    both trials reached, where ``choice`` beats ``opponent`` (ties half), averaged per seed,
    mean over seeds with a t-CI over seeds; ``mean_diff`` = the mean test-accuracy difference;
    ``p_adjusted`` = the Holm-adjusted head-to-head p of the pair (``pairwise_tests``). The
    ``*_budget`` columns: the same over the pairs compared at the budget only (both ran it):
    seeds with such a pair, mean difference, Holm-adjusted p (``pair_p_matrix``). ``holds`` /
    ``holds_budget``: +1 where the choice's lead over the opponent holds across the blocks they
    share and is shown in every dataset x model group, -1 where its deficit does, 0 otherwise
    (``block_signs``). ``median_diff``, ``blocks_ahead``, ``blocks_behind``: over the blocks the
    two share, each block's difference averaged over seeds: its median and how many blocks have
    the choice ahead or behind. A mean far from the median is carried by a few blocks (one
    allocation collapsing at one sparsity), which ``findings`` says in words."""
    columns = [
        "factor",
        "choice",
        "opponent",
        "n_contexts",
        "n_units",
        "win_rate",
        "ci_low",
        "ci_high",
        "mean_diff",
        "median_diff",
        "blocks_ahead",
        "blocks_behind",
        "p_adjusted",
        "n_units_budget",
        "mean_diff_budget",
        "p_adjusted_budget",
        "holds",
        "holds_budget",
    ]
    h2h = head_to_head(results, factor)
    if h2h.empty:
        return pd.DataFrame(columns=columns)
    table = _win_rate_test(h2h, ["choice", "opponent"], "win").rename(columns={"mean": "win_rate"})
    extra = (
        h2h.groupby(["choice", "opponent"])
        .agg(n_contexts=("n_blocks", "max"), mean_diff=("diff", "mean"))
        .reset_index()
    )
    table = table.merge(extra, on=["choice", "opponent"])
    blocks = pair_table(context_scores(results, factor), "block_diffs")
    per_block = (
        blocks.assign(ahead=blocks["diff"] > 0, behind=blocks["diff"] < 0)
        .groupby(["choice", "opponent"])
        .agg(median_diff=("diff", "median"), blocks_ahead=("ahead", "sum"), blocks_behind=("behind", "sum"))
        .reset_index()
    )
    table = table.merge(per_block, on=["choice", "opponent"], how="left")
    if p_matrix is None:  # rank_choices computed it already when called from ranking_tables
        _, p_matrix, _ = pairwise_tests(_unit_matrix(context_scores(results, factor)), h2h)
    at_end = head_to_head(results, factor, budget=True)
    end_p = pair_p_matrix(at_end, list(p_matrix.index))
    end = (
        at_end.groupby(["choice", "opponent"])
        .agg(n_units_budget=("seed", "nunique"), mean_diff_budget=("diff", "mean"))
        .reset_index()
    )
    table = table.merge(end, on=["choice", "opponent"], how="left")
    table["n_units_budget"] = table["n_units_budget"].fillna(0).astype("int64")
    for column, matrix in (("p_adjusted", p_matrix), ("p_adjusted_budget", end_p)):
        table[column] = [
            matrix.loc[a, b] if a in matrix.index and b in matrix.columns else np.nan
            for a, b in zip(table["choice"], table["opponent"])
        ]
    # Whether the lead (+1) or the deficit (-1) holds across the blocks the pair shares, as a
    # robust verdict needs: a mean over contexts can come from a lead in most and a larger deficit
    # in one (``block_signs``); over every comparison and over those at the budget.
    for column, budget in (("holds", False), ("holds_budget", True)):
        signs = block_signs(results, factor, budget=budget)
        table[column] = [
            int(signs.loc[a, b]) if a in signs.index and b in signs.columns and pd.notna(signs.loc[a, b]) else 0
            for a, b in zip(table["choice"], table["opponent"])
        ]
    table.insert(0, "factor", factor)
    return table[columns]


def _block_matrix(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seed-averaged accuracy, block info) per block x choice."""
    acc = scores.groupby(["ctx", "choice"])["acc"].mean().unstack("choice")
    info = scores.groupby("ctx")[["dataset", "model", "context"]].first()
    return acc, info


def _group_regret(acc: pd.DataFrame, groups: pd.Series) -> pd.Series:
    """Leave-one-(dataset x model)-out: per held-out group, the regret (best accuracy minus the
    chosen one, averaged over the group's blocks) of the choice with the best mean rank over all
    other groups' blocks."""
    ranks = acc.rank(axis=1, ascending=False)
    k = acc.notna().sum(axis=1)
    # Normalized rank in [0, 1] (0 = best) so blocks holding different numbers of choices weigh alike.
    normalized = (ranks - 1).div((k - 1).where(k > 1), axis=0)
    out = {}
    for group in groups.unique():
        held = (groups == group).to_numpy()
        train = normalized.loc[~held]
        if train.empty:
            continue
        mean_rank = train.mean(axis=0)
        if mean_rank.notna().sum() == 0:
            continue
        pick = mean_rank.idxmin()
        target = acc.loc[held]
        regret = target.max(axis=1) - target[pick]
        if regret.notna().any():
            out[group] = float(regret.mean())
    return pd.Series(out, dtype=np.float64)


def _transfer_regret(matrix: np.ndarray) -> np.ndarray:
    """Per target block: mean regret of using another block's best choice here."""
    present = ~np.isnan(matrix)
    filled = np.where(present, matrix, -np.inf)
    best_choice = filled.argmax(axis=1)
    best_counts = np.bincount(best_choice, minlength=matrix.shape[1]).astype(np.float64)
    donors = best_counts[None, :] - np.eye(matrix.shape[1])[best_choice]
    donors = np.where(present, donors, 0.0)
    regret = np.where(present, np.nanmax(matrix, axis=1)[:, None] - np.where(present, matrix, 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (donors * regret).sum(axis=1) / donors.sum(axis=1)


def concordance(results: Results, factor: str, *, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Agreement of the rankings across contexts, and the cost of carrying a choice elsewhere.

    Kendall's W (tie-corrected) and the Friedman p over *seed-averaged* blocks (each block
    counted once, however many seeds it has) holding every choice; blocks missing a choice are
    left out and counted (``n_incomplete_contexts``); when fewer than MIN_UNITS blocks are
    complete, the choices missing most often are left out first (``n_choices`` = choices kept). Transfer: leave-one-(dataset x model)-out
    regret (``loco_regret``, t-CI over the held-out groups, ``n_regret_groups`` of them; null with
    fewer than two groups), choosing by mean rank on the other groups; ``transfer_regret``: mean
    regret of using another block's best choice."""
    scores = context_scores(results, factor)
    record = {
        "factor": factor,
        "kendall_w": np.nan,
        "n_contexts": 0,
        "n_choices": 0,
        "friedman_p": np.nan,
        "loco_regret": np.nan,
        "loco_ci_low": np.nan,
        "loco_ci_high": np.nan,
        "transfer_regret": np.nan,
        "n_regret_contexts": 0,
        "n_regret_groups": 0,
        "n_incomplete_contexts": 0,
    }
    if scores.empty:
        return record
    acc, info = _block_matrix(scores)
    # Incomplete blocks: while too few blocks hold every choice, leave out the choice missing from
    # the most blocks (and say how many choices and blocks remain).
    kept = acc
    while kept.shape[1] > 2 and int(kept.notna().all(axis=1).sum()) < MIN_UNITS:
        kept = kept.drop(columns=kept.notna().sum().idxmin())
    complete = kept.notna().all(axis=1).to_numpy()
    m, n = int(complete.sum()), kept.shape[1]
    record.update(n_contexts=m, n_choices=n, n_incomplete_contexts=int((~complete).sum()))
    if m >= MIN_UNITS and n >= 2:
        ranks = kept.loc[complete].rank(axis=1, ascending=False).to_numpy()
        w = kendalls_w(ranks)
        record["kendall_w"] = w
        if n >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = float(friedmanchisquare(*kept.loc[complete].to_numpy().T).pvalue)
            record["friedman_p"] = p if np.isfinite(p) else 0.0
        else:
            from paitune.analysis.stats import friedman_p_value

            record["friedman_p"] = friedman_p_value(w, m, n)
    groups = info["dataset"].astype(str) + " x " + info["model"].astype(str)
    regrets = _group_regret(acc, groups.loc[acc.index])
    if len(regrets) >= 2:
        t = grouped_t_test(pd.DataFrame({"r": regrets.to_numpy()}), [], "r")
        record.update(
            loco_regret=float(t["mean"].iloc[0]),
            loco_ci_low=float(t["ci_low"].iloc[0]),
            loco_ci_high=float(t["ci_high"].iloc[0]),
            n_regret_groups=int(len(regrets)),
            n_regret_contexts=int(groups.loc[acc.index].isin(regrets.index).sum()),
        )
    transfer = _transfer_regret(acc.to_numpy())
    if np.isfinite(transfer).any():
        record["transfer_regret"] = float(np.nanmean(transfer))
    return record


def ranking_tables(results: Results, factors=tuple(FACTORS), *, n_boot: int = N_BOOT, seed: int = SEED):
    """(rankings, concordance, pairwise, slices, tests) over the given factors; ``tests`` maps a
    factor to its pairwise p matrix (the critical-difference diagram's bars) and mean Friedman ranks."""
    ranked, slices, pairs, conc, tests = [], [], [], [], {}
    for factor in factors:
        table, factor_slices, factor_tests = rank_choices(results, factor, with_slices=True, with_tests=True)
        ranked.append(table)
        slices.append(factor_slices.assign(factor=factor))
        pairs.append(pairwise_win_rates(results, factor, p_matrix=factor_tests["p_matrix"]))
        conc.append(concordance(results, factor))
        tests[factor] = factor_tests
    return (
        pd.concat(ranked, ignore_index=True),
        pd.DataFrame(conc),
        pd.concat(pairs, ignore_index=True),
        pd.concat(slices, ignore_index=True),
        tests,
    )


def dropped_contexts(results: Results) -> int:
    """Contexts with trials (control none, dense left out) that no ranking could use."""
    meta = scoring_meta(results)["contexts"]
    used = set(context_scores(results, "method_x_allocation")["context"])
    return int((~meta["context"].isin(used)).sum())
