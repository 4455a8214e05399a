"""Sanity checks: does each method's mask beat its own controls?

For every method and control (shuffle, reinit, invert, or any other non-``none`` control), the
completed trial with the control is paired with the unmodified one of the same method, allocation,
dataset, model, budget, sparsity and seed (several trials of one pair, e.g. learning rates, are
averaged). ``delta`` = accuracy(control) - accuracy(none), averaged over pairs, with a bootstrap
CI over pairs; ``n`` = number of pairs.

Verdict per row (rule): ``too_few_runs`` when n < MIN_CONTEXTS pairs; ``hurts`` when the CI lies
below 0; ``helps`` when it lies above 0; otherwise ``no_effect`` (not distinguishable from 0 at
this n — absence of evidence, the CI says how large an effect could hide). ``interpretation``
turns that into what it means for the method (Frankle et al. 2021, Su et al. 2020): e.g. shuffle
not hurting means the per-layer densities carry the signal, not the positions within a layer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.accuracy import CONTEXT_COLUMNS, completed_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_CONTEXTS, N_BOOT, SEED, grouped_mean_ci

PAIR_COLUMNS = CONTEXT_COLUMNS + ["method", "allocation"]

_MEANING = {
    ("shuffle", False): "per-layer densities carry the signal (positions within layers do not matter)",
    ("shuffle", True): "mask positions carry signal beyond the per-layer densities",
    ("reinit", False): "the mask works with fresh weights (initial values do not matter)",
    ("reinit", True): "the mask is tied to the initial weights it was scored on",
    ("invert", False): "keeping the lowest scores does as well: the score order carries no signal",
    ("invert", True): "the scores rank weights meaningfully (inverting them hurts)",
}


def _interpret(control: str, verdict: str) -> str:
    if verdict == "too_few_runs":
        return "too few paired runs to tell"
    hurts = verdict == "hurts"
    if (control, hurts) in _MEANING:
        return _MEANING[(control, hurts)]
    return f"{control} lowers accuracy" if hurts else f"{control} shows no loss of accuracy"


def sanity_checks(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{method, control, delta, ci_low, ci_high, n, verdict, interpretation, mean_none, mean_control}."""
    columns = ["method", "control", "delta", "ci_low", "ci_high", "n", "verdict", "interpretation",
               "mean_none", "mean_control"]
    done = completed_trials(results)
    cell = done.groupby(PAIR_COLUMNS + ["control"], dropna=False, observed=True)["test_acc"].mean().reset_index()
    base = cell.loc[cell["control"] == "none"].drop(columns="control").rename(columns={"test_acc": "acc_none"})
    treated = cell.loc[cell["control"] != "none"]
    if base.empty or treated.empty:
        return pd.DataFrame(columns=columns)
    pairs = treated.merge(base, on=PAIR_COLUMNS, how="inner")
    pairs["delta"] = pairs["test_acc"] - pairs["acc_none"]
    table = grouped_mean_ci(pairs, ["method", "control"], "delta", n_boot=n_boot, seed=seed,
                            min_size=MIN_CONTEXTS).rename(columns={"mean": "delta"})
    means = pairs.groupby(["method", "control"]).agg(
        mean_none=("acc_none", "mean"), mean_control=("test_acc", "mean")).reset_index()
    table = table.merge(means, on=["method", "control"])
    verdict = np.select(
        [table["n"] < MIN_CONTEXTS, table["ci_high"] < 0, table["ci_low"] > 0],
        ["too_few_runs", "hurts", "helps"], default="no_effect",
    )
    table["verdict"] = verdict
    table.loc[table["n"] < MIN_CONTEXTS, ["ci_low", "ci_high"]] = np.nan
    table["interpretation"] = [_interpret(c, v) for c, v in zip(table["control"], table["verdict"])]
    return table[columns].sort_values(["method", "control"]).reset_index(drop=True)
