"""Zero-cost proxies at init vs accuracy, compared like with like.

Only unmodified masks count (control ``none``: an inverted or shuffled mask is a different
question) and the dense reference is left out. The target is each trial's test accuracy at its
context's common epoch (``paitune.analysis.common``): stopped trials count with what they showed.
Beside the proxies, two plain baselines are scored the same way (``kind`` = "baseline"):
``params_kept`` and ``flops_sparse``; a proxy that does no better than counting parameters adds
nothing.

- within context, described: in each context (dataset x model x sparsity x budget) with at least
  MIN_RUNS_CORRELATION trials, the proxy's Spearman with accuracy and its partial Spearman
  controlling for the two baselines (ranks, baselines regressed out, residuals correlated). The
  per-context values are combined on Fisher's z scale: mean z with a Student-t 95% interval over
  contexts (a fixed-effect interval with fewer than MIN_UNITS contexts), mapped back with tanh:
  ``within_spearman`` (``within_ci_low``/``within_ci_high``), ``within_partial_spearman``
  (``within_partial_ci_low``/``within_partial_ci_high``), ``n_contexts``. These intervals take
  the contexts as independent, which they are not (every context holds the same configs), so
  they describe and never decide.
- within context, tested (what decides): the unit is the *config*, a method x allocation x
  hyperparameter setting, which recurs in every context with several seeds. A permutation test
  relabels the configs (``config_permutation_tests``): the levels of method, allocation and
  hyperparameter setting are permuted independently, with the same permutation in every
  context, and each trial's proxy value moves with its config to the matching trial (same seed
  where every config of the context ran it) of the config it is relabelled as. The statistic is
  the mean over contexts of the within-context (partial) Spearman. ``within_p`` tests the raw
  Spearman, ``within_partial_p`` the partial one;
  ``n_configs`` and ``n_contexts_tested`` say what they rest on (the largest complete block of
  contexts x configs, see ``config_permutation_tests``). Where some context's common epoch is
  before the budget (ASHA stopped trials), the same test on the completed trials' final accuracy
  gives ``within_partial_p_budget`` (else it equals ``within_partial_p``), ``common_epoch`` the
  median common epoch. ``adds_beyond_size`` is true when both (Holm-adjusted over the proxies)
  are below 0.05, false when not, null with fewer than MIN_UNITS configs, without
  parameter/FLOP counts, or for the baselines; ``size_note`` says it in words.
- pooled (descriptive only): Spearman (bootstrap CI), Kendall's tau-b and the partial Spearman
  over all trials of all contexts. Across contexts, anything that tracks sparsity or the dataset
  correlates with accuracy, so these numbers never decide a verdict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.stats import kendalltau

from paitune.analysis.common import DENSE_METHOD, context_table, p_text, scored_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import (
    ALPHA,
    MIN_RUNS_CORRELATION,
    MIN_UNITS,
    N_BOOT,
    N_PERMUTATIONS,
    SEED,
    crossed_permutation_p,
    fisher_z_combine,
    grouped_partial_spearman,
    grouped_rank_residuals,
    grouped_spearman,
    holm,
)
from paitune.results.schema import PROXY_PREFIX

BASELINES = ("params_kept", "flops_sparse")
CONTEXT_KEYS = ["context", "dataset", "model", "sparsity", "max_epochs"]
# What tells two configs of a context apart: the factors whose levels the permutation test permutes.
CONFIG_FACTORS = ["method", "allocation", "hyper"]
_UNTESTED = {"n_configs": 0, "n_contexts": 0, "stat": np.nan, "p": np.nan}  # a test that could not run


def _size_columns(done: pd.DataFrame) -> list[str]:
    return [b for b in BASELINES if b in done.columns and pd.api.types.is_numeric_dtype(done[b])]


def _long(results: Results, *, at_budget: bool = False) -> pd.DataFrame:
    """One row per (trial, proxy or baseline): control none, no dense reference; ``test_acc`` at
    the context's common epoch, or with ``at_budget`` the trials that ran the budget with their
    final test accuracy."""
    scored = scored_trials(results)
    rows = scored.loc[(scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
    if at_budget:
        rows = rows.loc[rows["completed"]]
        rows = rows.assign(acc=results.trials["test_acc"].to_numpy(np.float64)[rows["tix"].to_numpy()])
    trials = results.trials.iloc[rows["tix"].to_numpy()]
    proxies = [c for c in results.proxy_columns if pd.api.types.is_numeric_dtype(trials[c])]
    sizes = _size_columns(trials)
    base = pd.DataFrame(
        {
            "context": rows["context"].to_numpy(),
            "dataset": rows["dataset"].to_numpy(),
            "model": rows["model"].to_numpy(),
            "sparsity": rows["sparsity"].to_numpy(),
            "max_epochs": rows["max_epochs"].to_numpy(),
            "method": rows["method"].to_numpy(),
            "allocation": rows["allocation"].to_numpy(),
            "hyper": rows["config"].to_numpy(),  # hyperparameter setting (lr, ...), one id per values
            "seed": rows["seed"].to_numpy(),
            "tix": rows["tix"].to_numpy(),
            "test_acc": rows["acc"].to_numpy(),
        }
    )
    for size in sizes:
        base[size] = trials[size].to_numpy(dtype=np.float64)
    frames = []
    for column in proxies + sizes:  # one block per proxy column (a handful), vectorized inside
        name = column[len(PROXY_PREFIX) :] if column.startswith(PROXY_PREFIX) else column
        frame = base.assign(
            proxy=name,
            kind="proxy" if column in proxies else "baseline",
            value=trials[column].to_numpy(dtype=np.float64),
        )
        frames.append(frame.loc[np.isfinite(frame["value"])])
    if not frames:
        return pd.DataFrame(
            columns=CONTEXT_KEYS + CONFIG_FACTORS + ["seed", "tix", "test_acc", "proxy", "kind", "value"]
        )
    return pd.concat(frames, ignore_index=True)


def proxy_points(results: Results) -> pd.DataFrame:
    """The rows the ``proxies`` table's pooled numbers (``n``, ``spearman``, ...) are computed
    over, one per trial and proxy (or baseline, ``kind``) with a finite value: control ``none``,
    the dense reference left out, ``test_acc`` the trial's test accuracy at its context's common
    epoch (stopped trials included). Columns: {context, dataset, model, sparsity, max_epochs,
    method, allocation, hyper, seed, tix, test_acc, params_kept / flops_sparse where counted,
    proxy, kind, value}."""
    return _long(results)


def _complete_block(present: np.ndarray) -> list[np.ndarray]:
    """The indices kept along each axis of ``present`` (contexts x levels of each config factor,
    true where the cell has trials): a block in which every cell is present, found greedily by
    dropping, while one is missing, the line (one context, one method, ...) with the largest
    share of missing cells; on a tie the context goes first (the configs are the units)."""
    keep = [np.arange(n) for n in present.shape]
    while True:
        sub = present[np.ix_(*keep)]
        if sub.size == 0 or sub.all():
            return keep
        best = (-1.0, 0, 0)
        for axis in range(sub.ndim):
            missing = 1.0 - sub.mean(axis=tuple(a for a in range(sub.ndim) if a != axis))
            i = int(np.argmax(missing))
            if missing[i] > best[0] + 1e-12:
                best = (float(missing[i]), axis, i)
        _, axis, i = best
        keep[axis] = np.delete(keep[axis], i)


def _tested_block(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The trials the permutation test uses and the factors that define a config.

    Contexts with fewer than MIN_RUNS_CORRELATION trials are left out. The configs are method x
    allocation x hyperparameter setting, or method x allocation (the setting then only orders a
    config's trials) where that keeps more trials: hyperparameters sampled afresh for each trial
    never recur. The largest complete block of contexts x configs is kept (``_complete_block``),
    so that every relabelling maps each config onto one that ran in the same contexts."""
    frame = frame.loc[frame.groupby("context")["value"].transform("size") >= MIN_RUNS_CORRELATION]
    if frame.empty:
        return frame, CONFIG_FACTORS
    best: tuple[int, list[str], np.ndarray] | None = None
    for factors in (CONFIG_FACTORS, CONFIG_FACTORS[:2]):
        codes = [pd.factorize(frame[c], use_na_sentinel=False)[0] for c in ["context"] + factors]
        present = np.zeros(tuple(int(c.max()) + 1 for c in codes), dtype=bool)
        present[tuple(codes)] = True
        keep = _complete_block(present)
        mask = np.logical_and.reduce([np.isin(c, k) for c, k in zip(codes, keep)])
        if best is None or int(mask.sum()) > best[0]:
            best = (int(mask.sum()), factors, mask)
    return frame.loc[best[2]], best[1]


def _permutation_test(frame: pd.DataFrame, controls: list[str], n_resamples: int, seed: int) -> dict:
    """{n_configs, n_contexts, stat, p} of one proxy: the mean within-context (partial) Spearman
    of value and test_acc, and its p from relabelling the configs (``crossed_permutation_p``)."""
    names = ["value", "test_acc"] + controls
    frame = frame.loc[np.isfinite(frame[names].to_numpy(dtype=np.float64)).all(axis=1)]
    frame, factors = _tested_block(frame)
    out = dict(_UNTESTED)
    if frame.empty:
        return out
    levels, cell = [], np.zeros(len(frame), dtype=np.int64)
    for factor in factors:
        codes, uniques = pd.factorize(frame[factor], use_na_sentinel=False)
        levels.append(len(uniques))
        cell = cell * len(uniques) + codes
    n_cells = int(np.prod(levels))
    # Trials are matched across configs by position: a relabelled config brings the proxy value
    # of its trial in the same position. Each config's trials in a context are ordered by seed
    # (then hyperparameter setting), the seeds every config of the context ran first, so those
    # match seed for seed; each config keeps as many trials as the context's smallest config.
    frame = frame.assign(_cell=cell)
    shared = frame.groupby(["context", "seed"], dropna=False)["_cell"].transform("nunique") == n_cells
    frame = frame.assign(_later=~shared).sort_values(
        ["context", "_cell", "_later", "seed", "hyper", "tix"], kind="stable"
    )
    frame["_position"] = frame.groupby(["context", "_cell"]).cumcount()
    smallest = frame.groupby(["context", "_cell"])["_position"].transform("size").groupby(frame["context"])
    frame = frame.loc[frame["_position"] < smallest.transform("min")]
    slot = ["context", "_position"]
    frame = frame.loc[frame.groupby("context")["value"].transform("size") >= MIN_RUNS_CORRELATION]
    ex = grouped_rank_residuals(frame, ["context"], "value", controls)
    ey = grouped_rank_residuals(frame, ["context"], "test_acc", controls)
    usable = np.isfinite(ex) & np.isfinite(ey)  # a context where either is constant says nothing
    frame, ex, ey = frame.loc[usable], ex[usable], ey[usable]
    n_contexts = frame["context"].nunique()
    if n_contexts == 0:
        return out
    rows = frame.groupby(slot, dropna=False, sort=False).ngroup().to_numpy()
    index = (rows, frame["_cell"].to_numpy())
    shape = (int(rows.max()) + 1, n_cells)
    x, y = (coo_matrix((v, index), shape=shape).tocsr() for v in (ex, ey))
    cross = (x.T @ y).toarray() / n_contexts  # its trace: the mean over contexts of the (partial) Spearman
    out.update(n_configs=n_cells, n_contexts=n_contexts, stat=float(np.trace(cross)))
    if n_cells >= MIN_UNITS:
        out["p"] = crossed_permutation_p(cross, tuple(levels), n_resamples=n_resamples, seed=seed)
    return out


def config_permutation_tests(
    long: pd.DataFrame, *, n_resamples: int = N_PERMUTATIONS, seed: int = SEED
) -> pd.DataFrame:
    """Per proxy (and baseline): does it track accuracy within contexts, and beyond size?

    The unit is the config (method x allocation x hyperparameter setting): every context holds
    the same configs with several seeds each, so neither the trials of a context nor the
    contexts are independent. The test relabels configs instead (``crossed_permutation_p``: the
    levels of each factor permuted, the same permutation in every context, trials matched by
    seed where the context's configs share it), with the mean over contexts of the
    within-context Spearman (``within_stat``, ``within_p``) and of the partial Spearman given
    parameter count and FLOPs
    (``within_partial_stat``, ``within_partial_p``; proxies only, when the counts exist) as
    statistics. ``n_configs`` / ``n_contexts_tested`` are those of the partial test for a proxy
    (of the raw test otherwise); p is null below MIN_UNITS configs. ``long`` is ``_long``'s frame.
    """
    controls = [b for b in BASELINES if b in long.columns]
    rows = []
    for (kind, proxy), frame in long.groupby(["kind", "proxy"], sort=False):  # a handful of columns
        raw = _permutation_test(frame, [], n_resamples, seed)
        partial = _permutation_test(frame, controls, n_resamples, seed) if kind == "proxy" and controls else _UNTESTED
        units = partial if kind == "proxy" and controls else raw
        rows.append(
            {
                "proxy": proxy,
                "n_configs": units["n_configs"],
                "n_contexts_tested": units["n_contexts"],
                "within_stat": raw["stat"],
                "within_p": raw["p"],
                "within_partial_stat": partial["stat"],
                "within_partial_p": partial["p"],
            }
        )
    columns = ["proxy", "n_configs", "n_contexts_tested", "within_stat", "within_p", "within_partial_stat"]
    return pd.DataFrame(rows, columns=columns + ["within_partial_p"])


def _adjusted_text(p: float, adjusted: float) -> str:
    """A permutation p and its Holm adjustment over the proxies, as the note gives them."""
    if not np.isfinite(adjusted) or adjusted == p:
        return p_text(p, digits=2)
    return f"{p_text(p, digits=2)}, Holm-adjusted over the proxies {p_text(adjusted, digits=2)}"


def _size_sentence(row, has_counts: bool) -> str:
    if row.kind != "proxy":
        return ""
    if not has_counts:
        return f"{row.proxy}: no parameter/FLOP counts to control for size"
    if pd.isna(row.adds_beyond_size):
        if row.n_contexts_tested == 0:
            return (
                f"{row.proxy}: too few runs per context (at least {MIN_RUNS_CORRELATION} with accuracy, "
                "proxy and size) to test it within contexts"
            )
        return (
            f"{row.proxy}: too few configs ({row.n_configs}; at least {MIN_UNITS} needed) to test whether it "
            f"adds information beyond size (within-context partial Spearman {row.within_partial_spearman:.2f})"
        )
    # Two numbers, each named for what it is: the table's Fisher-z mean over every context with
    # enough trials, and the test's statistic (a plain mean over the seed-matched block it permutes).
    partial = (
        f"within-context partial Spearman {row.within_partial_spearman:.2f} (Fisher-z mean over "
        f"{row.n_contexts} contexts); permutation test over {row.n_configs} configs in "
        f"{row.n_contexts_tested} contexts, its statistic (the plain mean over their seed-matched trials) "
        f"{row.within_partial_stat:.2f}, {_adjusted_text(row.within_partial_p, row.within_partial_p_adjusted)}"
    )
    early = row.within_partial_p_budget != row.within_partial_p  # some common epoch before the budget
    if early:
        partial += (
            f"; accuracy at each context's common epoch (median epoch {row.common_epoch:g}), and on the trials "
            f"that ran the budget, at their final accuracy, {_adjusted_text(row.within_partial_p_budget, row.within_partial_p_budget_adjusted)}"
        )
    if row.adds_beyond_size:
        return (
            f"{row.proxy} adds information beyond size: controlling for parameter count and FLOPs, {partial} "
            f"(pooled raw Spearman {row.spearman:.2f}, descriptive)"
        )
    if np.isfinite(row.within_partial_p_adjusted) and row.within_partial_p_adjusted < ALPHA:
        return (
            f"{row.proxy} adds information beyond size at the contexts' common epoch, before the budget, but the "
            f"trials that ran the budget do not show it, so it is not shown to predict final accuracy ({partial})"
        )
    if np.isfinite(row.within_p_adjusted) and row.within_p_adjusted < ALPHA:
        return (
            f"{row.proxy} tracks accuracy within contexts (within-context Spearman {row.within_spearman:.2f}; "
            f"test statistic {row.within_stat:.2f}, {_adjusted_text(row.within_p, row.within_p_adjusted)}) "
            f"but is not shown to add anything beyond size ({partial})"
        )
    raw = (
        ""
        if pd.isna(row.within_p)
        else f"; within-context Spearman {row.within_spearman:.2f}, test statistic {row.within_stat:.2f}, "
        f"{_adjusted_text(row.within_p, row.within_p_adjusted)}"
    )
    return (
        f"{row.proxy} is not shown to add anything beyond size at {row.n_configs} configs, nor to track "
        f"accuracy within contexts ({partial}{raw}); pooled over contexts, where size changes too, its "
        f"Spearman is {row.spearman:.2f} (descriptive)"
    )


def size_bias(long: pd.DataFrame, overall: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """``overall`` (with ``config_permutation_tests``' columns) plus params_spearman,
    flops_spearman, partial_spearman (+ CI), adds_beyond_size, size_note."""
    baseline = overall.loc[overall["kind"] == "baseline"].set_index("proxy")["spearman"]
    overall = overall.assign(
        params_spearman=baseline.get("params_kept", np.nan), flops_spearman=baseline.get("flops_sparse", np.nan)
    )
    controls = [b for b in BASELINES if b in long.columns]
    proxies = long.loc[long["kind"] == "proxy"]
    if controls and not proxies.empty:
        partial = grouped_partial_spearman(proxies, ["proxy"], "value", "test_acc", controls, n_boot=n_boot, seed=seed)
        partial = partial.rename(
            columns={"partial": "partial_spearman", "ci_low": "partial_ci_low", "ci_high": "partial_ci_high"}
        ).drop(columns="n")
        overall = overall.merge(partial, on="proxy", how="left")
    else:
        overall = overall.assign(partial_spearman=np.nan, partial_ci_low=np.nan, partial_ci_high=np.nan)
    # One claim per proxy, so a report scoring many proxies is Holm-adjusted over them, as every
    # other section is over its rows.
    is_proxy = (overall["kind"] == "proxy").to_numpy()
    for raw in ("within_p", "within_partial_p"):
        p = pd.to_numeric(overall[raw], errors="coerce").to_numpy(dtype=np.float64)
        adjusted = np.full(len(p), np.nan)
        adjusted[is_proxy] = holm(p[is_proxy])
        overall[f"{raw}_adjusted"] = adjusted
    # A claim about accuracy at the budget: where some context's common epoch is before it, the
    # trials that ran the budget must show it too (an intersection-union test).
    budget_p = pd.to_numeric(overall["within_partial_p_budget"], errors="coerce").to_numpy(dtype=np.float64)
    adjusted = np.full(len(budget_p), np.nan)
    adjusted[is_proxy] = holm(np.where(np.isfinite(budget_p[is_proxy]), budget_p[is_proxy], 1.0))
    overall["within_partial_p_budget_adjusted"] = adjusted
    p = overall["within_partial_p_adjusted"].to_numpy(dtype=np.float64)
    known = is_proxy & np.isfinite(p)
    overall["adds_beyond_size"] = pd.array(np.where(known, (p < ALPHA) & (adjusted < ALPHA), False), dtype="boolean")
    overall.loc[~known, "adds_beyond_size"] = pd.NA
    has_counts = bool(controls)
    overall["size_note"] = [_size_sentence(row, has_counts) for row in overall.itertuples()]  # one per proxy
    return overall


def _combine(by_context: pd.DataFrame, value: str, prefix: str) -> pd.DataFrame:
    rows = []
    for proxy, group in by_context.groupby("proxy"):  # one per proxy column: a handful
        mean, low, high, m = fisher_z_combine(group[value].to_numpy(), group["n"].to_numpy())
        rows.append(
            {
                "proxy": proxy,
                prefix: mean,
                f"{prefix.replace('_spearman', '')}_ci_low": low,
                f"{prefix.replace('_spearman', '')}_ci_high": high,
                f"_n_{prefix}": m,
            }
        )
    return pd.DataFrame(rows)


def proxy_correlations(
    results: Results, *, n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(proxies, proxies_by_context).

    proxies: {proxy, spearman, kendall, ci_low, ci_high, n, kind, within_spearman, within_ci_low,
    within_ci_high, n_contexts, within_partial_spearman, within_partial_ci_low,
    within_partial_ci_high, n_configs, n_contexts_tested, within_stat, within_p,
    within_partial_stat, within_partial_p, within_p_adjusted, within_partial_p_adjusted,
    params_spearman, flops_spearman, partial_spearman, partial_ci_low, partial_ci_high,
    common_epoch, within_partial_p_budget, within_partial_p_budget_adjusted, adds_beyond_size,
    size_note}; ci_* are the pooled Spearman's, within_*_p the permutation tests
    over configs (``config_permutation_tests``), *_adjusted the same Holm-adjusted over the proxies
    tested (the baselines are not claims and are not counted).
    proxies_by_context: {proxy, context, dataset, model, sparsity, max_epochs, n, spearman,
    ci_low, ci_high, partial_spearman}.
    """
    long = _long(results)
    columns = [
        "proxy",
        "spearman",
        "kendall",
        "ci_low",
        "ci_high",
        "n",
        "kind",
        "within_spearman",
        "within_ci_low",
        "within_ci_high",
        "n_contexts",
        "within_partial_spearman",
        "within_partial_ci_low",
        "within_partial_ci_high",
        "n_configs",
        "n_contexts_tested",
        "within_stat",
        "within_p",
        "within_partial_stat",
        "within_partial_p",
        "within_p_adjusted",
        "within_partial_p_adjusted",
        "params_spearman",
        "flops_spearman",
        "partial_spearman",
        "partial_ci_low",
        "partial_ci_high",
        "common_epoch",
        "within_partial_p_budget",
        "within_partial_p_budget_adjusted",
        "adds_beyond_size",
        "size_note",
    ]
    context_columns = ["proxy"] + CONTEXT_KEYS + ["n", "spearman", "ci_low", "ci_high", "partial_spearman"]
    if long.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=context_columns)
    overall = grouped_spearman(long, ["kind", "proxy"], "value", "test_acc", n_boot=n_boot, seed=seed)
    kendall = {}
    for name, group in long.groupby("proxy"):  # one scipy call per proxy, O(n log n) each
        if len(group) >= MIN_RUNS_CORRELATION:
            kendall[name] = kendalltau(group["value"], group["test_acc"]).statistic
    overall["kendall"] = overall["proxy"].map(kendall)
    by_context = grouped_spearman(long, ["proxy"] + CONTEXT_KEYS, "value", "test_acc", n_boot=n_boot, seed=seed)
    controls = [b for b in BASELINES if b in long.columns]
    if controls:
        # Per-context partial correlations: only the point values are combined (over contexts),
        # so no per-context bootstrap is drawn.
        partial = grouped_partial_spearman(
            long.loc[long["kind"] == "proxy"],
            ["proxy"] + CONTEXT_KEYS,
            "value",
            "test_acc",
            controls,
            n_boot=1,
            seed=seed,
        )
        by_context = by_context.merge(
            partial[["proxy"] + CONTEXT_KEYS + ["partial"]].rename(columns={"partial": "partial_spearman"}),
            on=["proxy"] + CONTEXT_KEYS,
            how="left",
        )
    else:
        by_context["partial_spearman"] = np.nan
    valid = by_context.loc[by_context["spearman"].notna()]
    within = _combine(valid, "spearman", "within_spearman")
    if within.empty:
        within = pd.DataFrame(
            columns=["proxy", "within_spearman", "within_ci_low", "within_ci_high", "_n_within_spearman"]
        )
    within = within.rename(columns={"_n_within_spearman": "n_contexts"})
    partial_within = _combine(
        by_context.loc[by_context["partial_spearman"].notna()], "partial_spearman", "within_partial_spearman"
    )
    if partial_within.empty:
        partial_within = pd.DataFrame(
            columns=["proxy", "within_partial_spearman", "within_partial_ci_low", "within_partial_ci_high"]
        )
    partial_within = partial_within.drop(columns=[c for c in partial_within.columns if c.startswith("_n_")])
    overall = overall.merge(within, on="proxy", how="left").merge(partial_within, on="proxy", how="left")
    for column in (
        "within_spearman",
        "within_ci_low",
        "within_ci_high",
        "within_partial_spearman",
        "within_partial_ci_low",
        "within_partial_ci_high",
    ):
        overall[column] = pd.to_numeric(overall[column], errors="coerce")
    overall.loc[
        overall["kind"] != "proxy", ["within_partial_spearman", "within_partial_ci_low", "within_partial_ci_high"]
    ] = np.nan
    overall["n_contexts"] = pd.to_numeric(overall["n_contexts"], errors="coerce").fillna(0).astype("int64")
    overall = overall.merge(config_permutation_tests(long, seed=seed), on="proxy", how="left")
    epochs = context_table(results)
    overall["common_epoch"] = float(epochs["common_epoch"].median()) if len(epochs) else np.nan
    if (epochs["common_epoch"] < epochs["max_epochs"]).any():
        at_end = config_permutation_tests(_long(results, at_budget=True), seed=seed)
        overall = overall.merge(
            at_end[["proxy", "within_partial_p"]].rename(columns={"within_partial_p": "within_partial_p_budget"}),
            on="proxy",
            how="left",
        )
    else:  # every context's common epoch is the budget: the same test
        overall["within_partial_p_budget"] = overall["within_partial_p"]
    for column in ("n_configs", "n_contexts_tested"):
        overall[column] = pd.to_numeric(overall[column], errors="coerce").fillna(0).astype("int64")
    overall = size_bias(long, overall, n_boot=n_boot, seed=seed)
    overall = overall[columns].sort_values(["kind", "spearman"], ascending=[False, False], na_position="last")
    return overall.reset_index(drop=True), by_context[context_columns].reset_index(drop=True)
