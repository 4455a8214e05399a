"""Zero-cost proxies at init vs final accuracy.

Every ``proxy_<name>`` column of the trials table is correlated with final accuracy (test_acc of
completed trials, any control). Beside the proxies, two plain baselines are scored the same way
(``kind`` = "baseline"): ``params_kept`` and ``flops_sparse``; a proxy that does no better than
counting parameters adds nothing.

- overall: Spearman (CI: bootstrap, normal approximation above LARGE_N points) and Kendall's tau-b
  (scipy) over all completed trials. Across sparsities, every proxy that tracks density looks good
  here, so read the within-context numbers too:
- within context: Spearman inside each context (dataset x model x sparsity x seed x budget) with
  at least MIN_RUNS_CORRELATION trials, then their mean over contexts with a bootstrap CI over
  contexts (``within_spearman``, ``within_ci_low``/``within_ci_high``, ``n_contexts``).
- size bias (NAS-Bench-Suite-Zero, Krishnakumar et al. 2022: many proxies mostly count
  parameters): beside each proxy, the overall Spearman of the two baselines (``params_spearman``,
  ``flops_spearman``) and the proxy's *partial* Spearman with accuracy controlling for both
  (``partial_spearman``: ranks, baselines regressed out, residuals correlated; CI by bootstrap:
  ``partial_ci_low``/``partial_ci_high``). ``adds_beyond_size`` is true when the partial CI
  excludes 0, false when it includes 0 (in particular when the raw CI does not: the proxy's
  correlation was only size), null when it cannot be computed; ``size_note`` says it in words.

The dense reference trials (method dense) are left out: they are not sampled choices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from paitune.analysis.accuracy import CONTEXT_COLUMNS, completed_methods
from paitune.analysis.load import Results
from paitune.analysis.stats import (
    MIN_RUNS_CORRELATION, N_BOOT, SEED, grouped_mean_ci, grouped_partial_spearman, grouped_spearman,
)
from paitune.results_schema import PROXY_PREFIX

BASELINES = ("params_kept", "flops_sparse")


def _size_columns(done: pd.DataFrame) -> list[str]:
    return [b for b in BASELINES if b in done.columns and pd.api.types.is_numeric_dtype(done[b])]


def _long(results: Results) -> pd.DataFrame:
    done = completed_methods(results)
    proxies = [c for c in results.proxy_columns if pd.api.types.is_numeric_dtype(done[c])]
    sizes = _size_columns(done)
    value_columns = proxies + sizes
    frames = []
    for column in value_columns:  # one block per proxy column (a handful), vectorized inside
        name = column[len(PROXY_PREFIX):] if column.startswith(PROXY_PREFIX) else column
        frame = done[CONTEXT_COLUMNS + ["test_acc"] + sizes].assign(
            proxy=name, kind="proxy" if column in proxies else "baseline",
            value=done[column].astype(np.float64))
        frames.append(frame.loc[np.isfinite(frame["value"])])
    if not frames:
        return pd.DataFrame(columns=CONTEXT_COLUMNS + ["test_acc", "proxy", "kind", "value"])
    return pd.concat(frames, ignore_index=True)


def _excludes_zero(low, high) -> np.ndarray:
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return (low > 0) | (high < 0)


def _size_sentence(row) -> str:
    if row.kind != "proxy":
        return ""
    if pd.isna(row.adds_beyond_size):
        return f"{row.proxy}: too few runs (or no parameter/FLOP counts) to control for size"
    partial = f"partial Spearman {row.partial_spearman:.2f} [{row.partial_ci_low:.2f}, {row.partial_ci_high:.2f}]"
    if row.adds_beyond_size:
        return (f"{row.proxy} adds information beyond size: {partial} after controlling for parameter "
                f"count and FLOPs (raw {row.spearman:.2f})")
    if _excludes_zero(row.ci_low, row.ci_high):
        return (f"{row.proxy} adds nothing beyond size: its correlation with accuracy ({row.spearman:.2f}) "
                f"vanishes after controlling for parameter count and FLOPs ({partial})")
    return f"{row.proxy} does not predict accuracy, with or without controlling for size (raw {row.spearman:.2f}, {partial})"


def size_bias(long: pd.DataFrame, overall: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """``overall`` plus params_spearman, flops_spearman, partial_spearman (+ CI), adds_beyond_size, size_note."""
    baseline = overall.loc[overall["kind"] == "baseline"].set_index("proxy")["spearman"]
    overall = overall.assign(params_spearman=baseline.get("params_kept", np.nan),
                             flops_spearman=baseline.get("flops_sparse", np.nan))
    controls = [b for b in BASELINES if b in long.columns]
    proxies = long.loc[long["kind"] == "proxy"]
    if controls and not proxies.empty:
        partial = grouped_partial_spearman(proxies, ["proxy"], "value", "test_acc", controls,
                                           n_boot=n_boot, seed=seed)
        partial = partial.rename(columns={"partial": "partial_spearman", "ci_low": "partial_ci_low",
                                          "ci_high": "partial_ci_high"}).drop(columns="n")
        overall = overall.merge(partial, on="proxy", how="left")
    else:
        overall = overall.assign(partial_spearman=np.nan, partial_ci_low=np.nan, partial_ci_high=np.nan)
    known = (overall["kind"] == "proxy") & overall["partial_ci_low"].notna() & overall["partial_ci_high"].notna()
    flag = _excludes_zero(overall["partial_ci_low"], overall["partial_ci_high"])
    overall["adds_beyond_size"] = pd.array(np.where(known, flag, False), dtype="boolean")
    overall.loc[~known.to_numpy(), "adds_beyond_size"] = pd.NA
    overall["size_note"] = [_size_sentence(row) for row in overall.itertuples()]  # one per proxy
    return overall


def proxy_correlations(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(proxies, proxies_by_context).

    proxies: {proxy, spearman, kendall, ci_low, ci_high, n, kind, within_spearman, within_ci_low,
    within_ci_high, n_contexts, params_spearman, flops_spearman, partial_spearman, partial_ci_low,
    partial_ci_high, adds_beyond_size, size_note}; ci_* are Spearman's. proxies_by_context: {proxy, <context
    columns>, spearman, ci_low, ci_high, n}.
    """
    long = _long(results)
    columns = ["proxy", "spearman", "kendall", "ci_low", "ci_high", "n", "kind", "within_spearman",
               "within_ci_low", "within_ci_high", "n_contexts", "params_spearman", "flops_spearman",
               "partial_spearman", "partial_ci_low", "partial_ci_high", "adds_beyond_size", "size_note"]
    if long.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(columns=["proxy"] + CONTEXT_COLUMNS + ["spearman", "ci_low", "ci_high", "n"])
    overall = grouped_spearman(long, ["kind", "proxy"], "value", "test_acc", n_boot=n_boot, seed=seed)
    kendall = {}
    for name, group in long.groupby("proxy"):  # one scipy call per proxy, O(n log n) each
        if len(group) >= MIN_RUNS_CORRELATION:
            kendall[name] = kendalltau(group["value"], group["test_acc"]).statistic
    overall["kendall"] = overall["proxy"].map(kendall)
    by_context = grouped_spearman(long, ["proxy"] + CONTEXT_COLUMNS, "value", "test_acc",
                                  n_boot=n_boot, seed=seed)
    valid = by_context.loc[by_context["spearman"].notna()]
    within = grouped_mean_ci(valid, ["proxy"], "spearman", n_boot=n_boot, seed=seed).rename(columns={
        "mean": "within_spearman", "ci_low": "within_ci_low", "ci_high": "within_ci_high",
        "n": "n_contexts"})
    overall = overall.merge(within, on="proxy", how="left")
    overall["n_contexts"] = overall["n_contexts"].fillna(0).astype("int64")
    overall = size_bias(long, overall, n_boot=n_boot, seed=seed)
    overall = overall[columns].sort_values(["kind", "spearman"], ascending=[False, False], na_position="last")
    return overall.reset_index(drop=True), by_context.reset_index(drop=True)
