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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from paitune.analysis.accuracy import CONTEXT_COLUMNS, completed_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_RUNS_CORRELATION, N_BOOT, SEED, grouped_mean_ci, grouped_spearman
from paitune.results_schema import PROXY_PREFIX

BASELINES = ("params_kept", "flops_sparse")


def _long(results: Results) -> pd.DataFrame:
    done = completed_trials(results)
    proxies = [c for c in results.proxy_columns if pd.api.types.is_numeric_dtype(done[c])]
    value_columns = proxies + [b for b in BASELINES if b in done.columns]
    frames = []
    for column in value_columns:  # one block per proxy column (a handful), vectorized inside
        name = column[len(PROXY_PREFIX):] if column.startswith(PROXY_PREFIX) else column
        frame = done[CONTEXT_COLUMNS + ["test_acc"]].assign(
            proxy=name, kind="proxy" if column in proxies else "baseline",
            value=done[column].astype(np.float64))
        frames.append(frame.loc[np.isfinite(frame["value"])])
    if not frames:
        return pd.DataFrame(columns=CONTEXT_COLUMNS + ["test_acc", "proxy", "kind", "value"])
    return pd.concat(frames, ignore_index=True)


def proxy_correlations(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(proxies, proxies_by_context).

    proxies: {proxy, spearman, kendall, ci_low, ci_high, n, kind, within_spearman, within_ci_low,
    within_ci_high, n_contexts}; ci_* are Spearman's. proxies_by_context: {proxy, <context
    columns>, spearman, ci_low, ci_high, n}.
    """
    long = _long(results)
    columns = ["proxy", "spearman", "kendall", "ci_low", "ci_high", "n", "kind", "within_spearman",
               "within_ci_low", "within_ci_high", "n_contexts"]
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
    overall = overall[columns].sort_values(["kind", "spearman"], ascending=[False, False], na_position="last")
    return overall.reset_index(drop=True), by_context.reset_index(drop=True)
