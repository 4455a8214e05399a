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
  mean 0 unless the effect reproduces. A paired t-test over seeds of the allocation's gap minus
  the method's says which matters more; ``inconclusive`` when neither is shown to.

Each answer is a row {question, subject, verdict, n_units, sentence}; the report prints the
sentences first, as one paragraph.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.load import Results
from paitune.analysis.rankings import head_to_head
from paitune.analysis.stats import ALPHA, MIN_UNITS, t_test_p

RANDOM = "random"
COLUMNS = ["question", "subject", "verdict", "n_units", "sentence"]


def _pct(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3g}"


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
        if n < MIN_UNITS:
            verdict, claim = "too_few_runs", "cannot be told apart from random pruning yet"
        elif significant and row.mean_diff > 0:
            verdict, claim = "beats_random", "beats random pruning at the same allocation"
        elif significant and row.mean_diff < 0:
            verdict, claim = "loses_to_random", "loses to random pruning at the same allocation"
        else:
            verdict, claim = "inconclusive", "is not shown to differ from random pruning at the same allocation"
        sentence = (
            f"{row.choice} {claim}: {_pct(row.mean_diff)} test accuracy, wins {row.win_rate:.0%} of "
            f"{int(row.n_contexts)} head-to-head comparisons ({n} seeds, "
            + (f"Holm {_p(row.p_adjusted)})" if np.isfinite(row.p_adjusted) else f"no test below {MIN_UNITS} seeds)")
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


def _advantages(h2h: pd.DataFrame) -> pd.DataFrame:
    """seeds x choices: each choice's mean accuracy difference to the other choices, per seed."""
    return h2h.groupby(["seed", "choice"])["diff"].mean().unstack("choice")


def cross_validated_spread(h2h: pd.DataFrame) -> pd.Series:
    """Per seed: how much the factor matters, cross-validated over seeds. The best and the worst
    choice are named from the *other* seeds (their mean advantages); the seed's own accuracy
    difference between those two is its value. A factor whose choices differ only by chance
    (or differently in every seed: a choice x seed interaction) has mean 0 however noisy; one
    with a reproducible effect has the best-minus-worst gap in points."""
    table = _advantages(h2h).dropna(axis=1, how="any") if len(h2h) else pd.DataFrame()
    if table.shape[0] < 2 or table.shape[1] < 2:
        return pd.Series(dtype=float)
    values = table.to_numpy(np.float64)
    out = {}
    for i, seed in enumerate(table.index):
        others = np.delete(values, i, axis=0).mean(axis=0)
        out[seed] = values[i, int(np.argmax(others))] - values[i, int(np.argmin(others))]
    return pd.Series(out)


def allocation_vs_method(results: Results) -> list[dict]:
    methods = head_to_head(results, "method")
    allocations = head_to_head(results, "allocation")
    both = pd.concat(
        {"allocation": cross_validated_spread(allocations), "method": cross_validated_spread(methods)}, axis=1
    ).dropna()
    if both.empty:
        return []
    n = len(both)
    diff = (both["allocation"] - both["method"]).to_numpy(np.float64)
    p = t_test_p(diff) if n >= MIN_UNITS else np.nan
    if n < MIN_UNITS:
        verdict, claim = "too_few_runs", "Too few seeds to say whether the allocation or the method matters more"
    elif p < ALPHA:
        verdict = "allocation" if diff.mean() > 0 else "method"
        claim = f"The {verdict} matters more"
    else:
        verdict, claim = "inconclusive", "Neither the allocation nor the method is shown to matter more"
    sentence = (
        f"{claim}: the best and worst allocation differ by {_pct(both['allocation'].mean())} (same method, "
        f"context and seed), the best and worst method by {_pct(both['method'].mean())} (same allocation), "
        f"each pair named by the other seeds ({n} seeds" + (f", paired t-test {_p(p)})." if np.isfinite(p) else ").")
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


def answer(results: Results, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows the report opens with (empty when the sweep compared neither question's choices)."""
    return pd.DataFrame(versus_random(tables) + allocation_vs_method(results), columns=COLUMNS)
