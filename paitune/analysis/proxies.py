"""Zero-cost proxies at init vs accuracy, compared like with like.

Only unmodified masks count (control ``none``: an inverted or shuffled mask is a different
question) and the dense reference is left out. The target is each trial's test accuracy at its
context's common epoch (``paitune.analysis.common``): stopped trials count with what they showed.
Beside the proxies, two plain baselines are scored the same way (``kind`` = "baseline"):
``params_kept`` and ``flops_sparse``; a proxy that does no better than counting parameters adds
nothing.

- within context (what decides): in each context (dataset x model x sparsity x budget) with at
  least MIN_RUNS_CORRELATION trials, the proxy's Spearman with accuracy and its partial Spearman
  controlling for the two baselines (ranks, baselines regressed out, residuals correlated). The
  per-context values are combined on Fisher's z scale: mean z with a Student-t 95% interval over
  contexts (a fixed-effect interval with fewer than MIN_UNITS contexts), mapped back with tanh:
  ``within_spearman`` (``within_ci_low``/``within_ci_high``), ``within_partial_spearman``
  (``within_partial_ci_low``/``within_partial_ci_high``), ``n_contexts``.
  ``adds_beyond_size`` is true when the within-context partial interval excludes 0, false when it
  includes 0, null when it cannot be computed (and for the baselines); ``size_note`` says it in words.
- pooled (descriptive only): Spearman (bootstrap CI), Kendall's tau-b and the partial Spearman
  over all trials of all contexts. Across contexts, anything that tracks sparsity or the dataset
  correlates with accuracy, so these numbers never decide a verdict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from paitune.analysis.common import DENSE_METHOD, scored_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import (
    MIN_RUNS_CORRELATION,
    N_BOOT,
    SEED,
    fisher_z_combine,
    grouped_partial_spearman,
    grouped_spearman,
)
from paitune.results.schema import PROXY_PREFIX

BASELINES = ("params_kept", "flops_sparse")
CONTEXT_KEYS = ["context", "dataset", "model", "sparsity", "max_epochs"]


def _size_columns(done: pd.DataFrame) -> list[str]:
    return [b for b in BASELINES if b in done.columns and pd.api.types.is_numeric_dtype(done[b])]


def _long(results: Results) -> pd.DataFrame:
    scored = scored_trials(results)
    rows = scored.loc[(scored["control"] == "none") & (scored["method"] != DENSE_METHOD)]
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
        return pd.DataFrame(columns=CONTEXT_KEYS + ["test_acc", "proxy", "kind", "value"])
    return pd.concat(frames, ignore_index=True)


def _excludes_zero(low, high) -> np.ndarray:
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return (low > 0) | (high < 0)


def _size_sentence(row) -> str:
    if row.kind != "proxy":
        return ""
    if pd.isna(row.adds_beyond_size):
        return f"{row.proxy}: too few runs per context (or no parameter/FLOP counts) to control for size"
    partial = (
        f"within-context partial Spearman {row.within_partial_spearman:.2f} "
        f"[{row.within_partial_ci_low:.2f}, {row.within_partial_ci_high:.2f}] over {row.n_contexts} contexts"
    )
    if row.adds_beyond_size:
        return (
            f"{row.proxy} adds information beyond size: {partial} after controlling for parameter "
            f"count and FLOPs (pooled raw Spearman {row.spearman:.2f})"
        )
    if _excludes_zero(row.ci_low, row.ci_high):
        return (
            f"{row.proxy} adds nothing beyond size: its pooled correlation with accuracy ({row.spearman:.2f}) "
            f"does not hold within contexts once parameter count and FLOPs are controlled for ({partial})"
        )
    return f"{row.proxy} does not predict accuracy, with or without controlling for size (pooled {row.spearman:.2f}, {partial})"


def size_bias(long: pd.DataFrame, overall: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """``overall`` plus params_spearman, flops_spearman, partial_spearman (+ CI), adds_beyond_size, size_note."""
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
    known = (
        (overall["kind"] == "proxy")
        & overall["within_partial_ci_low"].notna()
        & overall["within_partial_ci_high"].notna()
    )
    flag = _excludes_zero(overall["within_partial_ci_low"], overall["within_partial_ci_high"])
    overall["adds_beyond_size"] = pd.array(np.where(known, flag, False), dtype="boolean")
    overall.loc[~known.to_numpy(), "adds_beyond_size"] = pd.NA
    overall["size_note"] = [_size_sentence(row) for row in overall.itertuples()]  # one per proxy
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
    within_partial_ci_high, params_spearman, flops_spearman, partial_spearman, partial_ci_low,
    partial_ci_high, adds_beyond_size, size_note}; ci_* are the pooled Spearman's.
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
        "params_spearman",
        "flops_spearman",
        "partial_spearman",
        "partial_ci_low",
        "partial_ci_high",
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
    overall = size_bias(long, overall, n_boot=n_boot, seed=seed)
    overall = overall[columns].sort_values(["kind", "spearman"], ascending=[False, False], na_position="last")
    return overall.reset_index(drop=True), by_context[context_columns].reset_index(drop=True)
