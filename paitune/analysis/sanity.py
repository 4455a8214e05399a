"""Sanity checks: does each method's mask beat its own controls, and does it use the data?

A control trial (shuffle, reinit, invert, corrupt_labels, corrupt_pixels, or any other
non-``none`` control) is the paired arm of an unmodified trial: same context, method,
allocation, config and seed. Each pair is compared at the last epoch *both* reached (a control is
never trained past its partner; a pair stopped by ASHA is compared where it stopped):
``delta`` = test accuracy(control) - test accuracy(none) there. Failed trials are left out.

The unit is the **seed**: every pair of one seed (all contexts and configs) is averaged into one
number per (method, control), since contexts that share a seed are not independent. Over seeds:
``delta`` = mean, ``ci_low``/``ci_high`` = Student-t 95% interval, ``n_units`` = seeds, ``n`` =
pairs behind them, ``p_adjusted`` = two-sided one-sample t-test p, Holm-adjusted over every row
tested, ``p_equivalent`` = the p that |delta| < EQUIVALENCE_MARGIN at the budget in every context
under every allocation (TOST, Schuirmann 1987, overall and per (context, allocation) cell on the
pairs that ran the budget, the largest of them: an intersection-union test), Holm-adjusted over
the rows like ``p_adjusted``.

Verdict per row (first that applies): ``not_applicable`` for a corrupted-data control
(corrupt_labels, corrupt_pixels: the scoring batches get random labels / per-image shuffled
pixels, Su et al. 2020; any control registered with ``batches``) on a method whose mask does not
use data — the data-free methods (registered without ``needs_data``: random, magnitude, synflow,
dense, ...), or any method whose control trials kept exactly the mask of their unmodified pair
(same ``mask_hash`` in every pair) — with null numbers; every data-free method present gets such
a row for every corrupt control the sweep used. ``too_few_runs`` when fewer than MIN_UNITS seeds
hold a pair; ``hurts`` / ``helps`` when p_adjusted < 0.05 and delta is below / above 0, and the
pairs that ran the budget show it too (``p_adjusted_budget``: the same t-test on them alone,
their deltas adjusted for ASHA's selection of the unmodified arm, ``BudgetPairs``; Holm-adjusted
over the rows, below 0.05 with the same sign; an intersection-union test);
``hurts_at_rungs`` / ``helps_at_rungs`` when only the first holds (ASHA compared the pairs that
show it at a rung: the control may only slow training down, or speed it up);
``no_effect`` when the equivalence test says |delta| < EQUIVALENCE_MARGIN at the budget in every
context (p_equivalent < 0.05): the effect, if any, is smaller than the margin; otherwise ``inconclusive`` (neither an effect nor
its absence is shown at this number of seeds). ``interpretation`` turns that into what it means
for the method (Frankle et al. 2021, Su et al. 2020), as the control's registration words it
(``if_hurts`` / ``if_not``): e.g. shuffle not hurting means the per-layer densities carry the
signal, not the positions within a layer; corrupting the data hurting means the mask uses the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.accuracy import completed_trials
from paitune.analysis.common import (
    PARTNER_KEYS,
    TRANSFER_GROUP,
    accuracy_at,
    at_budget,
    at_last_shared_epoch,
    context_table,
    partner_frame,
    reached_epochs,
)
from paitune.analysis.load import Results
from paitune.analysis.stats import ACCURACY_MARGIN, ALPHA, MIN_UNITS, N_BOOT, SEED, all_equal_p, grouped_t_test, holm
from paitune.results.schema import STATUS_STOPPED

NOT_APPLICABLE = "not_applicable"
CONTEXT_DEPENDENT = "context_dependent"
_NOT_APPLICABLE_TEXT = (
    "not applicable: the mask does not use the data (data-free method, or the control "
    "left every mask unchanged), so corrupting the data cannot change it"
)


# The facts below come from the registries of paitune.pruning (plug-ins included), imported when an
# analysis runs so that importing the analysis stays light.
def data_controls() -> frozenset[str]:
    """The controls that corrupt the scoring data (corrupt_labels, corrupt_pixels, ...)."""
    from paitune.pruning.controls import control_names, control_spec

    return frozenset(name for name in control_names() if control_spec(name).changes_data)


def data_free_methods() -> frozenset[str]:
    """The methods whose masks never see a batch of data (random, magnitude, synflow, dense, ...)."""
    from paitune.pruning.registry import registered

    return frozenset(spec.name for spec in registered() if not spec.needs_data)


def _meaning(control: str, hurts: bool) -> str | None:
    """What the control's registration says a loss (or no loss) of accuracy means, if it says."""
    from paitune.pruning.controls import control_names, control_spec

    if control not in control_names():
        return None
    spec = control_spec(control)
    return (spec.if_hurts if hurts else spec.if_not) or None


def _interpret(control: str, verdict: str, budget_opposite: bool = False) -> str:
    if verdict == NOT_APPLICABLE:
        return _NOT_APPLICABLE_TEXT
    if verdict == "too_few_runs":
        return "too few seeds with paired runs to tell"
    if verdict == "inconclusive":
        return (
            f"inconclusive: neither an effect of {control} nor its absence (within "
            f"{EQUIVALENCE_MARGIN:.0%} accuracy) is shown at this number of seeds"
        )
    if verdict == CONTEXT_DEPENDENT:
        return (
            f"{control} moves accuracy on average over the contexts, but not the same way in every "
            "dataset x model: see the rows per context"
        )
    if verdict.endswith("_at_rungs"):
        moved, back = ("lowers", "raises") if verdict == "hurts_at_rungs" else ("raises", "lowers")
        budget = (
            f"the pairs that ran the budget show the opposite: it {back} accuracy there"
            if budget_opposite
            else "not shown on the pairs that ran the budget"
        )
        return f"{control} {moved} accuracy where ASHA compared the pair at a rung; {budget}"
    hurts = verdict == "hurts"
    meaning = _meaning(control, hurts)
    if meaning is not None:
        return meaning
    return f"{control} lowers accuracy" if hurts else f"{control} shows no loss of accuracy"


def _unchanged_masks(results: Results) -> pd.DataFrame:
    """(method, control) of corrupt controls whose every pair (completed trials) kept the
    unmodified mask_hash."""
    done = completed_trials(results)
    if "mask_hash" not in done.columns:
        return pd.DataFrame(columns=["method", "control"])
    frame = partner_frame(results).assign(mask_hash=results.trials["mask_hash"].to_numpy())
    hashes = frame.loc[frame["tix"].isin(done["tix"]) & frame["mask_hash"].notna()]
    base = hashes.loc[hashes["control"] == "none"].drop(columns=["control", "tix"])
    treated = hashes.loc[hashes["control"].isin(data_controls())]
    pairs = treated.merge(base, on=PARTNER_KEYS, how="inner", suffixes=("", "_none"))
    if pairs.empty:
        return pd.DataFrame(columns=["method", "control"])
    same = (pairs["mask_hash"] == pairs["mask_hash_none"]).groupby([pairs["method"], pairs["control"]]).all()
    return same.loc[same].reset_index()[["method", "control"]]


EQUIVALENCE_MARGIN = ACCURACY_MARGIN  # "no effect" means |delta| < 1 point, shown by TOST
# "No effect" must hold in each of these cells: a row pools its contexts and its allocations.
EQUIVALENCE_CELL = ["context", "allocation"]


def paired_deltas(results: Results) -> pd.DataFrame:
    """One row per (control trial, unmodified partner): {method, allocation, control, context,
    seed, epoch, max_epochs, acc_none, acc_control, delta, val_none_1, ..., val_none_K}; epoch =
    the last epoch both reached; val_none_k = the unmodified arm's validation accuracy at the k-th
    epoch where pairs of its context were stopped (what ASHA judged the pair by there), NaN for a
    pair stopped before it or a context with fewer stops (``BudgetPairs``)."""
    trials = results.trials
    reached = reached_epochs(results)
    frame = partner_frame(results).assign(
        reached=reached[trials["tix"].to_numpy(np.int64)],
        max_epochs=trials["max_epochs"].to_numpy(np.float64),
        stopped=(trials["status"] == STATUS_STOPPED).to_numpy(),
    )
    frame = frame.loc[(trials["status"] != "failed").to_numpy() & (frame["reached"] > 0).to_numpy()]
    keys = PARTNER_KEYS
    base = frame.loc[frame["control"] == "none"].drop_duplicates(keys)
    treated = frame.loc[frame["control"] != "none"]
    pairs = treated.merge(base.drop(columns=["control", "max_epochs"]), on=keys, suffixes=("", "_none"))
    columns = [
        "method",
        "allocation",
        "control",
        "context",
        "seed",
        "epoch",
        "max_epochs",
        "acc_none",
        "acc_control",
        "delta",
        "stopped",
    ]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    epoch, acc_control, acc_none = at_last_shared_epoch(
        results, pairs["tix"].to_numpy(), pairs["reached"].to_numpy(),
        pairs["tix_none"].to_numpy(), pairs["reached_none"].to_numpy(),
    )  # fmt: skip
    pairs = pairs.assign(epoch=epoch, acc_control=acc_control, acc_none=acc_none, delta=acc_control - acc_none)
    # Stopped by the scheduler (either arm; the arm follows its partner) before the budget: the
    # selection ``BudgetPairs`` adjusts for. A pair cut short by a diverged arm is not selected on.
    stopped = (pairs["stopped"] | pairs["stopped_none"]) & ~at_budget(pairs["epoch"], pairs["max_epochs"])
    pairs = pairs.assign(stopped=stopped).loc[pairs["delta"].notna()].reset_index(drop=True)
    stops = _stop_epochs(pairs)
    for k, stop in enumerate(stops.T, start=1):
        val, _ = accuracy_at(results, pairs["tix_none"].to_numpy(), np.nan_to_num(stop, nan=-1.0))
        pairs[f"{VAL_NONE}{k}"] = np.where(pairs["epoch"].to_numpy(np.float64) >= stop, val, np.nan)
    return pairs[columns + [f"{VAL_NONE}{k}" for k in range(1, stops.shape[1] + 1)]]


VAL_NONE = "val_none_"  # + k: the unmodified arm's validation accuracy at its context's k-th stop


def _stop_epochs(pairs: pd.DataFrame) -> np.ndarray:
    """pairs x K: the epochs at which the scheduler stopped pairs of each pair's context,
    ascending, NaN-padded to the most stops any context has."""
    stopped = pairs.loc[pairs["stopped"], ["context", "epoch"]]
    per_context = stopped.drop_duplicates().sort_values("epoch").groupby("context")["epoch"].agg(list)
    width = int(per_context.map(len).max()) if len(per_context) else 0
    table = np.full((len(per_context) + 1, width), np.nan)  # the last row: contexts without stops
    for i, epochs in enumerate(per_context):
        table[i, : len(epochs)] = epochs
    codes = pd.Index(per_context.index).get_indexer(pairs["context"])
    return table[np.where(codes < 0, len(per_context), codes)]


def _equivalence_p(pairs: pd.DataFrame, budget: BudgetPairs) -> pd.DataFrame:
    """{method, control, p_equivalent}: the p of "|delta| < EQUIVALENCE_MARGIN at the budget, in
    every context under every allocation", an intersection-union test (Berger 1982): the largest
    of the TOST p over all pairs and of each (context, allocation) cell's own (seeds the unit
    throughout), each on the pairs that both ran the budget (their deltas adjusted for ASHA's
    selection: ``BudgetPairs``). A pair ASHA stopped is compared at a rung, which says nothing
    about the budget; and an average over cells can be 0 with +3 points in one and -3 in another,
    across contexts or across the allocations a row pools. A cell without MIN_UNITS such seeds
    cannot show it: p 1."""
    keys = ["method", "control"]
    full = budget.full
    if full.empty:
        return pd.DataFrame(columns=[*keys, "p_equivalent"])
    parts = []
    for by in (keys, [*keys, *EQUIVALENCE_CELL]):
        tested = budget.tests(by, margin=EQUIVALENCE_MARGIN)
        p = tested["p_equivalent"].where(tested["n_units"] >= MIN_UNITS, 1.0).fillna(1.0)
        parts.append(tested[keys].assign(p_equivalent=p.to_numpy()))
    # Cells where the method ran but no pair reached the budget: nothing shown there.
    ran = pairs.groupby(keys)[EQUIVALENCE_CELL].value_counts().groupby(level=keys).size().rename("ran")
    shown = full.groupby(keys)[EQUIVALENCE_CELL].value_counts().groupby(level=keys).size().rename("shown")
    missing = pd.concat([ran, shown], axis=1).fillna(0)
    missing = missing.loc[missing["shown"] < missing["ran"]].reset_index()[keys].assign(p_equivalent=1.0)
    return pd.concat([*parts, missing], ignore_index=True).groupby(keys, as_index=False)["p_equivalent"].max()


def _budget_p(budget: BudgetPairs) -> pd.DataFrame:
    """{method, control, delta_budget, p_budget}: the mean delta over seeds and the t-test p of
    delta = 0, on the pairs that both ran the budget, adjusted for ASHA's selection
    (``BudgetPairs``; NaN p below MIN_UNITS such seeds)."""
    keys = ["method", "control"]
    if budget.full.empty:
        return pd.DataFrame(columns=[*keys, "delta_budget", "p_budget"])
    tested = budget.tests(keys)
    p = tested["p"].where(tested["n_units"] >= MIN_UNITS)
    return tested[keys].assign(delta_budget=tested["mean"].to_numpy(), p_budget=p.to_numpy())


class BudgetPairs:
    """The pairs that both ran the budget, their deltas adjusted for ASHA's selection, and the
    tests over seeds on them.

    ASHA chose those pairs by one arm: it kept an unmodified trial for its validation accuracy at
    each rung, and that trial's luck lasts to the budget while its control partner's does not, so
    their deltas lean negative (a control that only trains slower "hurt" at the budget). The
    selection is on observed variables, the unmodified arm's accuracy at each stop
    (``val_none_k``), known for every pair that reached it, so the deltas are adjusted for them
    (sequential regression, selection on observables; ``_selection_adjusted``).
    The slope is estimated from the same seeds, and its error shifts every seed's adjusted delta
    alike: a t-test over seeds that took it as known would understate the variance. So a group
    holding adjusted pairs is tested with the delete-one-seed jackknife standard error of its
    mean, the adjustment (slope included) redone without each seed of the table, those without
    budget pairs in the group too; a group without (nothing stopped) gets the plain t-test over
    seeds."""

    KEYS = ["method", "control"]

    def __init__(self, pairs: pd.DataFrame):
        self.pairs = pairs
        self.full = pairs.loc[at_budget(pairs["epoch"], pairs["max_epochs"])] if len(pairs) else pairs
        if len(self.full):
            delta, touched = _selection_adjusted(pairs, self.full, self.KEYS)
            usable = np.isfinite(delta)  # a cell whose selection cannot be adjusted for shows nothing
            self.full, self.touched = self.full.assign(delta=delta).loc[usable], touched[usable]
        else:
            self.touched = np.zeros(0, dtype=bool)
        self._without: dict | None = None  # seed -> adjusted deltas of the budget pairs of the other seeds

    def _jackknife(self) -> dict:
        if self._without is None:
            self._without = {}
            raw = self.pairs.loc[self.full.index]
            # Every seed, budget pairs or not: a seed's stopped pairs feed its cells' means and
            # the pooled slopes, so the adjustment of every group moves without it.
            for seed in self.pairs["seed"].unique():
                others = self.pairs["seed"] != seed
                kept = raw.loc[raw["seed"] != seed]
                delta, _ = _selection_adjusted(self.pairs.loc[others], kept, self.KEYS)
                self._without[seed] = kept.assign(delta=delta)
        return self._without

    def tests(self, by: list[str], margin: float | None = None) -> pd.DataFrame:
        """``grouped_t_test`` over seeds of the adjusted deltas per group ``by``; groups holding
        adjusted pairs get jackknife p-values (and TOST p with ``margin``)."""
        per_seed = self.full.groupby([*by, "seed"])["delta"].mean().reset_index()
        tested = grouped_t_test(per_seed, by, "delta", margin=margin)
        hit = self.full.assign(_hit=self.touched).groupby(by)["_hit"].any()
        if not hit.any():
            return tested
        index = pd.MultiIndex.from_frame(tested[by]) if len(by) > 1 else pd.Index(tested[by[0]])
        adjusted = index.isin(hit.index[hit.to_numpy()])
        # groups x left-out seeds: each group's mean over its seeds, the adjustment redone without one
        theta = pd.concat(
            {
                seed: rest.groupby([*by, "seed"])["delta"].mean().groupby(level=list(range(len(by)))).mean()
                for seed, rest in self._jackknife().items()
            },
            axis=1,
        )
        units = theta.shape[1]  # every seed of the table: each one's deletion moves the adjustment
        for i in np.flatnonzero(adjusted):
            group = index[i]
            n = int(tested["n_units"].iloc[i])  # the seeds the group's mean is over: the t's df + 1
            if n < 2:
                continue
            values = theta.loc[group].to_numpy(np.float64)
            se = float(np.sqrt((units - 1) / units * ((values - values.mean()) ** 2).sum()))
            mean = float(tested["mean"].iloc[i])
            tested.loc[tested.index[i], "p"] = _t_p(mean, se, n)
            if margin is not None:
                lower = _t_p(mean + margin, se, n, side="greater")
                upper = _t_p(mean - margin, se, n, side="less")
                tested.loc[tested.index[i], "p_equivalent"] = max(lower, upper)
        return tested


def _shown_in_every_group(pairs: pd.DataFrame, results: Results, table: pd.DataFrame) -> pd.Series:
    """Per row of ``table``: its delta is shown in every dataset x model group it has pairs in, on
    its own: the one-sided t-test over seeds of the group's mean delta, in the direction of the
    row's delta, at ALPHA (each group one part of an intersection-union test; on MIN_UNITS seeds
    or more). With one group this follows from the row's own test."""
    groups = context_table(results)[["context", *TRANSFER_GROUP]]
    per_seed = (
        pairs.merge(groups, on="context", how="left")
        .groupby(["method", "control", *TRANSFER_GROUP, "seed"], dropna=False)["delta"]
        .mean()
        .reset_index()
    )
    tests = grouped_t_test(per_seed, ["method", "control", *TRANSFER_GROUP], "delta")
    sign = table.set_index(["method", "control"])["delta"]
    row_sign = np.sign(sign.reindex(pd.MultiIndex.from_frame(tests[["method", "control"]])).to_numpy(np.float64))
    shown = (tests["n_units"] >= MIN_UNITS) & (tests["p"] / 2 < ALPHA) & (np.sign(tests["mean"]) == row_sign)
    every = shown.groupby([tests["method"], tests["control"]]).all()
    return pd.Series(
        every.reindex(pd.MultiIndex.from_frame(table[["method", "control"]])).fillna(False).to_numpy(bool),
        index=table.index,
    )


def _t_p(mean: float, se: float, n: int, side: str = "two") -> float:
    """The t-test p of ``mean`` with standard error ``se`` on n - 1 degrees of freedom (two-sided,
    or one-sided: mean > 0 for "greater", mean < 0 for "less"); with no spread, the exact
    sign-flip p (``all_equal_p``) as everywhere else."""
    from scipy.stats import t as student_t

    if se <= 1e-12 * max(1.0, abs(mean)):
        agrees = {"two": abs(mean) > 1e-12, "greater": mean > 0, "less": mean < 0}[side]
        return float(all_equal_p(n, sides=2 if side == "two" else 1)) if agrees else 1.0
    t = mean / se
    if side == "two":
        return float(2 * student_t.sf(abs(t), n - 1))
    return float(student_t.sf(t, n - 1) if side == "greater" else student_t.cdf(t, n - 1))


def _selection_adjusted(pairs: pd.DataFrame, full: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The budget pairs' deltas adjusted for ASHA's selection (``BudgetPairs``), and which of them
    were adjusted: those of the (row, context) cells where pairs were stopped.

    ASHA selects at each stop k of a context on the unmodified arm's validation accuracy there,
    x_k (``val_none_k``), known for every pair that reached it: the pairs that ran the budget are
    missing the others at random given x_1..x_K (monotone, selection on observables). The mean
    delta the cell would have shown had no pair been stopped is estimated by sequential regression
    (Robins, Rotnitzky & Zhao 1995; Tsiatis 2006, ch. 10): from the last stop K down to the first,
    regress the outcome (delta on the budget pairs, then the previous stage's predictions) on
    x_1..x_k over the pairs that passed stop k, and predict it for every pair that reached stop k;
    the cell's estimate is the mean of the first stage's predictions over all its pairs. Each
    budget pair's adjusted delta is that estimate plus its residual at its cell's last stage, so
    their mean is the estimate and their spread is the delta's own, less what the arm's luck
    explains. Slopes are pooled over rows and contexts, each cell centred on its own means (one
    mechanism, regression to the mean of the arm's luck; a row's few pairs would give noisy
    slopes). With one stop this is delta - b (x_1 - the cell's mean x_1 over all its pairs). Where
    a stage's accuracies have no spread within the cells (one pair per cell passed it), the slopes
    are not identified: the budget pairs of the stopped cells come back NaN (not adjustable)."""
    cell = [*keys, "context"]
    xs = sorted((c for c in pairs.columns if c.startswith(VAL_NONE)), key=lambda c: int(c[len(VAL_NONE) :]))
    adjusted = pd.Series(full["delta"].to_numpy(np.float64), index=full.index)
    touched = pd.Series(False, index=full.index)
    if not xs or not pairs["stopped"].any():
        return adjusted.to_numpy(), touched.to_numpy()
    budget = pd.Series(at_budget(pairs["epoch"], pairs["max_epochs"]), index=pairs.index)
    cells = pairs.groupby(cell, sort=False).ngroup()
    work = np.isin(cells.to_numpy(), np.unique(cells.to_numpy()[pairs["stopped"].to_numpy()]))
    w = pairs.loc[work]
    g = pd.factorize(cells.loc[w.index].to_numpy())[0]  # 0 .. G-1: group means by bincount
    n_groups = int(g.max()) + 1
    x = w[xs].to_numpy(np.float64)
    reached = np.isfinite(x)  # reached[i, k]: pair i reached stop k + 1 (and it is one of its context's)
    on_budget = budget.loc[w.index].to_numpy()
    # A cell's stops: those any of its budget pairs saw (each budget pair reached every stop).
    seen = np.where(on_budget[:, None], reached, False).sum(axis=1)
    n_stops = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(n_stops, g, seen)
    n_stops = n_stops[g]
    y = np.where(on_budget, w["delta"].to_numpy(np.float64), np.nan)
    residual = np.full(len(w), np.nan)
    for k in range(len(xs), 0, -1):
        active = n_stops >= k
        passed = active & (on_budget | (reached[:, k] if k < len(xs) else False)) & np.isfinite(y)
        if not passed.any():
            continue
        h = np.where(reached[:, :k], x[:, :k], np.nan)
        # each cell's means over the pairs that passed stop k, centring the pooled fit
        y_bar, fitted = _group_mean(g[passed], y[passed], n_groups)
        h_bar = np.column_stack([_group_mean(g[passed], h[passed, j], n_groups)[0] for j in range(k)])
        hc = np.nan_to_num(h[passed] - h_bar[g[passed]])
        if np.linalg.matrix_rank(hc) < k:
            # No spread of the accuracies within cells to fit the slopes on (e.g. ASHA left one
            # budget pair per cell): the selection cannot be adjusted for, so these budget pairs
            # show nothing about the budget (NaN: left out of the budget tests).
            index = w.index[on_budget]
            adjusted.loc[index] = np.nan
            touched.loc[index] = True
            return adjusted.to_numpy(), touched.to_numpy()
        beta = np.linalg.lstsq(hc, y[passed] - y_bar[g[passed]], rcond=None)[0]
        # predicted for every pair of those cells that reached stop k
        rows = active & reached[:, k - 1] & fitted[g]
        pred = y_bar[g[rows]] + np.nan_to_num(h[rows] - h_bar[g[rows]]) @ beta
        last = rows & (n_stops == k) & on_budget
        residual[last] = y[last] - pred[last[rows]]
        y = y.copy()
        y[rows] = pred
    estimate = _group_mean(g, y, n_groups)[0]
    adjust = on_budget & np.isfinite(residual)
    index = w.index[adjust]
    adjusted.loc[index] = estimate[g[adjust]] + residual[adjust]
    touched.loc[index] = True
    return adjusted.to_numpy(), touched.to_numpy()


def _group_mean(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group 0..n_groups-1: the mean of its finite ``values`` (NaN where none), and whether it has any."""
    ok = np.isfinite(values)
    count = np.bincount(groups[ok], minlength=n_groups)
    total = np.bincount(groups[ok], weights=values[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), count > 0


def sanity_checks(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{method, control, delta, ci_low, ci_high, n, n_units, verdict, p_adjusted,
    p_equivalent, interpretation, mean_none, mean_control, n_censored}."""
    columns = [
        "method",
        "control",
        "delta",
        "ci_low",
        "ci_high",
        "n",
        "n_units",
        "verdict",
        "p_adjusted",
        "delta_budget",
        "p_adjusted_budget",
        "p_equivalent",
        "interpretation",
        "mean_none",
        "mean_control",
        "n_censored",
    ]
    pairs = paired_deltas(results)
    numbers = [
        "delta",
        "ci_low",
        "ci_high",
        "n",
        "n_units",
        "p",
        "p_budget",
        "delta_budget",
        "p_equivalent",
        "mean_none",
        "mean_control",
        "n_censored",
    ]
    if pairs.empty:
        table = pd.DataFrame(
            {
                "method": pd.Series(dtype=object),
                "control": pd.Series(dtype=object),
                **{c: pd.Series(dtype=np.float64) for c in numbers},
            }
        )
    else:
        per_seed = pairs.groupby(["method", "control", "seed"])["delta"].mean().reset_index()
        table = grouped_t_test(per_seed, ["method", "control"], "delta", margin=EQUIVALENCE_MARGIN)
        table = table.rename(columns={"mean": "delta"}).drop(columns="sd")
        means = (
            pairs.assign(censored=~at_budget(pairs["epoch"], pairs["max_epochs"]))
            .groupby(["method", "control"])
            .agg(
                n=("delta", "size"),
                mean_none=("acc_none", "mean"),
                mean_control=("acc_control", "mean"),
                n_censored=("censored", "sum"),
            )
            .reset_index()
        )
        table = table.merge(means, on=["method", "control"])
        budget = BudgetPairs(pairs)
        table = table.merge(_budget_p(budget), on=["method", "control"], how="left")
        table["p_equivalent"] = (
            table[["method", "control"]]
            .merge(_equivalence_p(pairs, budget), on=["method", "control"], how="left")["p_equivalent"]
            .to_numpy()
        )

    # Corrupt controls on methods whose masks do not use data: one row each, numbers null.
    trials = results.trials
    corrupt = sorted(set(trials["control"].unique()) & data_controls())
    data_free = sorted(set(trials["method"].unique()) & data_free_methods())
    inapplicable = pd.concat(
        [
            pd.DataFrame([(m, c) for m in data_free for c in corrupt], columns=["method", "control"]),
            _unchanged_masks(results),
        ],
        ignore_index=True,
    ).drop_duplicates()
    if table.empty and inapplicable.empty:
        return pd.DataFrame(columns=columns)
    table = table.merge(inapplicable.assign(_na=True), on=["method", "control"], how="outer")
    na = table["_na"].eq(True).to_numpy()
    table["n"] = table["n"].fillna(0).astype("int64")
    table["n_units"] = table["n_units"].fillna(0).astype("int64")
    table["n_censored"] = table["n_censored"].fillna(0).astype("int64")
    tested = ~na & (table["n_units"] >= MIN_UNITS).to_numpy()
    table["p_adjusted"] = holm(np.where(tested, table["p"], np.nan))
    table["p_adjusted_budget"] = holm(np.where(tested, table["p_budget"], np.nan))
    # An effect is a claim about the budget: the pairs that ran it must show it too (each test at
    # ALPHA: an intersection-union test); shown only where ASHA compared the pair at a rung, it is
    # an effect at the rungs.
    effect = table["p_adjusted"] < ALPHA
    # ... and in every dataset x model group on its own: an average over the groups can come from
    # a loss in one and a gain in another (planted -3 / +1 points: "hurts" in 11 of 20 tables).
    everywhere = _shown_in_every_group(pairs, results, table) if len(pairs) else np.zeros(len(table), dtype=bool)
    context_dependent = (effect & ~everywhere).to_numpy()
    effect = effect & everywhere
    budget_sign = np.sign(table["delta_budget"].fillna(0.0))
    budget_effect = table["p_adjusted_budget"] < ALPHA
    shown = budget_effect & (budget_sign == np.sign(table["delta"]))
    # e.g. a control that learns slower but ends better: behind at the rungs, ahead at the budget
    opposite = (effect & budget_effect & (budget_sign == -np.sign(table["delta"]))).to_numpy()
    # Each row's no_effect is a claim of its own: Holm over the rows, as for the effects.
    table["p_equivalent"] = holm(np.where(tested, table["p_equivalent"].fillna(1.0), np.nan))
    verdict = np.select(
        [
            na,
            ~tested,
            context_dependent,
            effect & shown & (table["delta"] < 0),
            effect & shown & (table["delta"] > 0),
            effect & (table["delta"] < 0),
            effect & (table["delta"] > 0),
            table["p_equivalent"] < ALPHA,
        ],
        [
            NOT_APPLICABLE,
            "too_few_runs",
            CONTEXT_DEPENDENT,
            "hurts",
            "helps",
            "hurts_at_rungs",
            "helps_at_rungs",
            "no_effect",
        ],  # fmt: skip
        default="inconclusive",
    )
    table["verdict"] = verdict
    table.loc[na | (table["n_units"] < 2).to_numpy(), ["ci_low", "ci_high"]] = np.nan
    table.loc[
        na, ["delta", "mean_none", "mean_control", "p_adjusted", "delta_budget", "p_adjusted_budget", "p_equivalent"]
    ] = np.nan
    table["interpretation"] = [
        _interpret(c, v, o) for c, v, o in zip(table["control"], table["verdict"], opposite, strict=True)
    ]
    return table[columns].sort_values(["method", "control"]).reset_index(drop=True)
