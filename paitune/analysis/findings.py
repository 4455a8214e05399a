"""Every verdict as a sentence a reader can check: the claim, the numbers and test behind it,
and how many independent units (seeds) it rests on. ``findings(tables) -> {section, subject,
verdict, sentence}``; the report prints them under their section and summary.json keeps them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.after_training import EQUIVALENCE_MARGIN as IMP_MARGIN
from paitune.analysis.common import points_text
from paitune.analysis.rankings import FACTORS, WIN_MARGIN
from paitune.analysis.sanity import EQUIVALENCE_MARGIN, NOT_APPLICABLE
from paitune.analysis.stats import ACCURACY_MARGIN, ALPHA, MIN_UNITS

MAX_PER_SECTION = 200


def _f(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or pd.isna(value):
        return "n/a"
    return f"{value:.{digits}g}"


def _all_others(others: int) -> str:
    return "the other choice" if others == 1 else f"all {others} other choices"


def _ranking_sentence(row, n_choices: int) -> str:
    others = n_choices - 1
    held = FACTORS.get(row.factor, [])
    block = f"context x {' x '.join(held)}" if held else "context"
    base = (
        f"{row.factor} {row.choice}: win rate {_f(row.win_rate, 2)} [{_f(row.ci_low, 2)}, {_f(row.ci_high, 2)}] "
        f"over {int(row.n_units)} seeds and {int(row.n_contexts)} blocks ({block})"
    )
    if row.verdict == "robust_winner":
        return (
            f"{base}; robust winner: significantly ahead of {_all_others(others)} (Friedman p = "
            f"{_f(row.friedman_p)}; largest Holm-adjusted head-to-head p = {_f(row.p_adjusted)} < 0.05), "
            "its lead over each holding across the blocks they share and shown in every dataset x model group."
        )
    if row.verdict == "robust_loser":
        return (
            f"{base}; robust loser: significantly behind {_all_others(others)} (Friedman p = "
            f"{_f(row.friedman_p)}; largest Holm-adjusted head-to-head p = {_f(row.p_adjusted)} < 0.05), "
            "its deficit to each holding across the blocks they share and shown in every dataset x model group."
        )
    if row.verdict in ("ahead_at_rungs", "behind_at_rungs"):
        ahead = row.verdict == "ahead_at_rungs"
        lead = "lead" if ahead else "deficit"
        at_budget = f"{_f(100 * row.budget_share, 2)}% of its comparisons; largest Holm-adjusted p there = " + _f(
            row.p_adjusted_budget
        )
        why = (
            f"significant there on average ({at_budget} < 0.05), but the {lead} does not hold in every block or "
            "is not shown in every dataset x model group at the budget (pairwise: holds_budget)"
            if row.p_adjusted_budget < ALPHA
            else f"not shown there ({at_budget}): ASHA stopped rivals at its rungs, where a choice that only "
            "learns faster also leads"
        )
        return (
            f"{base}; {'ahead of' if ahead else 'behind'} {_all_others(others)} where compared (Friedman p = "
            f"{_f(row.friedman_p)}; largest Holm-adjusted head-to-head p = {_f(row.p_adjusted)} < 0.05); on the "
            f"pairs that ran the budget {why}."
        )
    if row.verdict == "context_dependent":
        return (
            f"{base}; context dependent: its standing differs between levels of a context variable "
            f"(p = {_f(row.heterogeneity_p)}, Bonferroni-corrected) and it is significantly ahead of the "
            "field at some level (Bonferroni over the levels; see ranking_slices)."
        )
    if row.verdict == "no_difference":
        return (
            f"{base}; no difference from the field: its win rate is shown to lie within 0.5 +/- "
            f"{WIN_MARGIN} (90% t-interval inside the margin), its accuracy within {100 * ACCURACY_MARGIN:g} "
            "point of every other choice's in every dataset x model group (TOST), and no head-to-head test "
            "separates it from another choice."
        )
    if row.verdict == "too_few_runs":
        held = f"only {int(row.n_units)} seeds hold" if pd.notna(row.n_units) else f"fewer than {MIN_UNITS} seeds hold"
        return f"{row.factor} {row.choice}: too few runs: {held} every choice; a verdict needs {MIN_UNITS}."
    if others and others in (row.n_ahead, row.n_behind):
        side = "ahead of" if row.n_ahead == others else "behind"
        why = (
            "the Friedman test over seeds shows no difference among the choices"
            if not row.friedman_p < ALPHA
            else f"the {'lead' if row.n_ahead == others else 'deficit'} is not shown in every block, or in "
            "every dataset x model group on its own (pairwise: holds), so it is not robust"
        )
        return (
            f"{base}; inconclusive: significantly {side} {_all_others(others)} on average over seeds "
            f"(Friedman p = {_f(row.friedman_p)}; largest Holm-adjusted head-to-head p = {_f(row.p_adjusted)}), "
            f"but {why}."
        )
    return (
        f"{base}; inconclusive: significantly ahead of {int(row.n_ahead)} and behind {int(row.n_behind)} of "
        f"the {others} other choices (Friedman p = {_f(row.friedman_p)}), neither best, worst nor shown "
        "equivalent to the field."
    )


def _few_blocks_sentence(row) -> str:
    """A pair whose mean accuracy difference the median block does not share: the mean is carried
    by a few blocks (a collapse at one sparsity), and a reader of the pairwise table's mean_diff
    would take it for a general lead."""
    n_blocks = int(row.n_contexts)
    return (
        f"{row.factor} {row.choice} vs {row.opponent}: {points_text(row.mean_diff)} on average over "
        f"{n_blocks} blocks and {int(row.n_units)} seeds, but the median block difference is "
        f"{points_text(row.median_diff)}: ahead in {int(row.blocks_ahead)} and behind in "
        f"{int(row.blocks_behind)} of the {n_blocks} blocks, winning {row.win_rate:.0%} of the comparisons. "
        "A few blocks with large differences carry the mean (and a test of the mean): in a typical block "
        f"{row.choice} is not ahead; the verdicts ask that a lead hold across the blocks (pairwise: holds)."
    )


def _few_blocks_pairs(pairwise: pd.DataFrame) -> pd.DataFrame:
    """Ordered pairs with a mean difference of at least ACCURACY_MARGIN (the choice ahead, so each
    pair once) whose median block difference is not positive."""
    if pairwise.empty or "median_diff" not in pairwise.columns:
        return pairwise.iloc[:0]
    flagged = (pairwise["mean_diff"] >= ACCURACY_MARGIN) & ~(pairwise["median_diff"] > 0)
    return pairwise.loc[flagged].sort_values("mean_diff", ascending=False)


def _sanity_sentence(row) -> str:
    subject = f"{row.method} / {row.control}"
    if row.verdict == NOT_APPLICABLE:
        return f"{subject}: not applicable: the mask does not use the data, so corrupting it cannot change it."
    if row.verdict == "too_few_runs":
        return f"{subject}: too few runs: {int(row.n_units)} seeds with paired trials; a verdict needs {MIN_UNITS}."
    numbers = (
        f"delta {_f(row.delta)} [{_f(row.ci_low)}, {_f(row.ci_high)}] over {int(row.n_units)} seeds "
        f"({int(row.n)} pairs)"
    )
    if row.verdict in ("hurts", "helps"):
        if not getattr(row, "n_censored", 0):  # every pair ran the budget: the budget test is this test
            return f"{subject}: {row.verdict}: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05; every pair ran the budget."
        return (
            f"{subject}: {row.verdict}: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05; on the pairs "
            f"that ran the budget delta {_f(getattr(row, 'delta_budget', np.nan))} (adjusted for ASHA's "
            f"selection), Holm-adjusted p = {_f(row.p_adjusted_budget)}."
        )
    if row.verdict == "context_dependent":
        return (
            f"{subject}: context dependent: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05 on "
            "average, but not shown in every dataset x model group on its own: the control moves accuracy "
            "differently across them."
        )
    if row.verdict in ("hurts_at_rungs", "helps_at_rungs"):
        return (
            f"{subject}: {row.verdict}: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05, but "
            f"{int(row.n_censored)} pairs were compared at ASHA's rungs and the pairs that ran the budget do "
            f"not show it (p = {_f(row.p_adjusted_budget)})."
        )
    if row.verdict == "no_effect":
        return (
            f"{subject}: no effect: {numbers}; equivalence test (Holm-adjusted) p = {_f(row.p_equivalent)} "
            f"< 0.05 shows |delta| < {EQUIVALENCE_MARGIN} at the budget in every context."
        )
    untestable = not row.p_equivalent < 1.0  # a context with fewer than MIN_UNITS seeds of budget pairs
    equivalence = (
        f"equivalence within {EQUIVALENCE_MARGIN} cannot be shown: some context (or allocation) has fewer than "
        f"{MIN_UNITS} seeds whose pairs ran the budget"
        if untestable
        else f"no equivalence within {EQUIVALENCE_MARGIN} at the budget in every context shown (p = "
        f"{_f(row.p_equivalent)})"
    )
    return (
        f"{subject}: inconclusive: {numbers}; no effect shown (Holm-adjusted p = {_f(row.p_adjusted)}) and "
        f"{equivalence}."
    )


def _imp_sentence(row) -> str:
    subject = f"{row.method}/{row.allocation} at sparsity {_f(row.sparsity)} ({row.dataset}, {row.model})"
    if row.verdict == "too_few_runs":
        return f"{subject}: too few runs: {int(row.n)} paired seeds; a verdict needs {MIN_UNITS}."
    numbers = f"gap to IMP {_f(row.gap)} [{_f(row.ci_low)}, {_f(row.ci_high)}] over {int(row.n)} seeds"
    if row.verdict in ("below_imp", "above_imp"):
        return (
            f"{subject}: {row.verdict}: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05, and "
            f"{_f(row.p_adjusted_budget)} on the pairs that ran the budget."
        )
    if row.verdict in ("below_imp_at_rungs", "above_imp_at_rungs"):
        return (
            f"{subject}: {row.verdict}: {numbers}, Holm-adjusted p = {_f(row.p_adjusted)} < 0.05, but the pairs "
            f"that ran the budget do not show it (p = {_f(row.p_adjusted_budget)}); {row.note}."
        )
    if row.verdict == "matches_imp":
        return (
            f"{subject}: matches IMP: {numbers}; equivalence test (Holm-adjusted) p = {_f(row.p_equivalent)} "
            f"< 0.05 shows |gap| < {IMP_MARGIN} at the budget."
        )
    censored = getattr(row, "note", "")
    if isinstance(censored, str) and censored:
        return f"{subject}: inconclusive: {numbers}; no gap shown (Holm-adjusted p = {_f(row.p_adjusted)}); {censored}."
    return (
        f"{subject}: inconclusive: {numbers}; neither a gap (Holm-adjusted p = {_f(row.p_adjusted)}) nor "
        f"equivalence within {IMP_MARGIN} (p = {_f(row.p_equivalent)}) shown."
    )


def findings(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    rankings = tables.get("rankings", pd.DataFrame())
    for factor, group in rankings.groupby("factor", sort=False):
        for row in group.head(MAX_PER_SECTION).itertuples():
            rows.append(("rankings", f"{factor}:{row.choice}", row.verdict, _ranking_sentence(row, len(group))))
    for row in _few_blocks_pairs(tables.get("pairwise", pd.DataFrame())).head(MAX_PER_SECTION).itertuples():
        subject = f"{row.factor}:{row.choice}>{row.opponent}"
        rows.append(("rankings", subject, "mean_from_few_blocks", _few_blocks_sentence(row)))
    for row in tables.get("sanity", pd.DataFrame()).head(MAX_PER_SECTION).itertuples():
        rows.append(("sanity", f"{row.method}:{row.control}", row.verdict, _sanity_sentence(row)))
    for row in tables.get("pai_vs_imp", pd.DataFrame()).head(MAX_PER_SECTION).itertuples():
        rows.append(("pai_vs_imp", f"{row.method}:{row.allocation}:{row.sparsity}", row.verdict, _imp_sentence(row)))
    for row in tables.get("proxies", pd.DataFrame()).itertuples():
        if isinstance(getattr(row, "size_note", ""), str) and row.size_note:
            verdict = (
                ""
                if pd.isna(row.adds_beyond_size)
                else ("adds_beyond_size" if row.adds_beyond_size else "not_shown_beyond_size")
            )
            rows.append(("proxies", row.proxy, verdict, row.size_note))
    contexts = tables.get("contexts", pd.DataFrame())
    early = contexts.loc[contexts["common_epoch"] < contexts["max_epochs"]] if len(contexts) else contexts
    if len(early):
        rows.append(
            (
                "contexts",
                "common_epoch",
                "",
                f"{len(early)} of {len(contexts)} contexts had trials stopped before the budget. Two trials are "
                "compared at the last epoch both reached (rankings, controls, PaI vs IMP, the answer); the "
                "proxy correlations, regret and mean_acc use the context's common epoch, the last every trial "
                f"of it reached (median {_f(early['common_epoch'].median())} in these contexts), the others "
                "the full budget.",
            )
        )
    return pd.DataFrame(rows, columns=["section", "subject", "verdict", "sentence"])
