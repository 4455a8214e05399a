"""Sanity checks: does each method's mask beat its own controls, and does it use the data?

For every method and control (shuffle, reinit, invert, corrupt_labels, corrupt_pixels, or any
other non-``none`` control), the completed trial with the control is paired with the unmodified
one of the same method, allocation, dataset, model, budget, sparsity and seed (several trials of
one pair, e.g. learning rates, are averaged). ``delta`` = accuracy(control) - accuracy(none),
averaged over pairs, with a bootstrap CI over pairs; ``n`` = number of pairs.

Verdict per row (rule): ``not_applicable`` for a corrupted-data control (corrupt_labels,
corrupt_pixels: the scoring batches get random labels / per-image shuffled pixels, Su et al.
2020) on a method whose mask does not use data — the data-free methods (random, magnitude,
synflow, dense), or any method whose control trials kept exactly the mask of their unmodified
pair (same ``mask_hash`` in every pair) — with null numbers: there is nothing to measure, the
sweep ran the same mask twice. Every data-free method present gets such a row for every corrupt
control the sweep used, trials or not. Otherwise ``too_few_runs`` when n < MIN_CONTEXTS pairs;
``hurts`` when the CI lies below 0; ``helps`` when it lies above 0; otherwise ``no_effect`` (not
distinguishable from 0 at this n — absence of evidence, the CI says how large an effect could
hide). ``interpretation`` turns that into what it means for the method (Frankle et al. 2021, Su
et al. 2020): e.g. shuffle not hurting means the per-layer densities carry the signal, not the
positions within a layer; corrupting the data hurting means the mask uses the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.accuracy import CONTEXT_COLUMNS, completed_trials
from paitune.analysis.load import Results
from paitune.analysis.stats import MIN_CONTEXTS, N_BOOT, SEED, grouped_mean_ci

PAIR_COLUMNS = CONTEXT_COLUMNS + ["method", "allocation"]
CORRUPT_CONTROLS = ("corrupt_labels", "corrupt_pixels")
# Methods whose masks never see a batch of data (paitune.pruning scores them without batches).
DATA_FREE_METHODS = frozenset({"random", "magnitude", "synflow", "dense"})
NOT_APPLICABLE = "not_applicable"

_MEANING = {
    ("shuffle", False): "per-layer densities carry the signal (positions within layers do not matter)",
    ("shuffle", True): "mask positions carry signal beyond the per-layer densities",
    ("reinit", False): "the mask works with fresh weights (initial values do not matter)",
    ("reinit", True): "the mask is tied to the initial weights it was scored on",
    ("invert", False): "keeping the lowest scores does as well: the score order carries no signal",
    ("invert", True): "the scores rank weights meaningfully (inverting them hurts)",
    ("corrupt_labels", False): "the data does not matter to the mask: scoring with random labels does as well",
    ("corrupt_labels", True): "the mask uses the data: scoring with random labels hurts",
    ("corrupt_pixels", False): "the data does not matter to the mask: scoring with shuffled pixels does as well",
    ("corrupt_pixels", True): "the mask uses the data: scoring with shuffled pixels hurts",
}
_NOT_APPLICABLE_TEXT = ("not applicable: the mask does not use the data (data-free method, or the control "
                        "left every mask unchanged), so corrupting the data cannot change it")


def _interpret(control: str, verdict: str) -> str:
    if verdict == NOT_APPLICABLE:
        return _NOT_APPLICABLE_TEXT
    if verdict == "too_few_runs":
        return "too few paired runs to tell"
    hurts = verdict == "hurts"
    if (control, hurts) in _MEANING:
        return _MEANING[(control, hurts)]
    return f"{control} lowers accuracy" if hurts else f"{control} shows no loss of accuracy"


def _unchanged_masks(done: pd.DataFrame, pairs_on: list[str]) -> pd.DataFrame:
    """(method, control) of corrupt controls whose every pair kept the unmodified mask_hash."""
    if "mask_hash" not in done.columns:
        return pd.DataFrame(columns=["method", "control"])
    hashes = done.loc[done["mask_hash"].notna(), pairs_on + ["control", "mask_hash"]]
    base = hashes.loc[hashes["control"] == "none"].drop(columns="control")
    treated = hashes.loc[hashes["control"].isin(CORRUPT_CONTROLS)]
    pairs = treated.merge(base, on=pairs_on, how="inner", suffixes=("", "_none"))
    if pairs.empty:
        return pd.DataFrame(columns=["method", "control"])
    same = (pairs["mask_hash"] == pairs["mask_hash_none"]).groupby([pairs["method"], pairs["control"]]).all()
    return same.loc[same].reset_index()[["method", "control"]]


def sanity_checks(results: Results, *, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """{method, control, delta, ci_low, ci_high, n, verdict, interpretation, mean_none, mean_control}."""
    columns = ["method", "control", "delta", "ci_low", "ci_high", "n", "verdict", "interpretation",
               "mean_none", "mean_control"]
    done = completed_trials(results)
    cell = done.groupby(PAIR_COLUMNS + ["control"], dropna=False, observed=True)["test_acc"].mean().reset_index()
    base = cell.loc[cell["control"] == "none"].drop(columns="control").rename(columns={"test_acc": "acc_none"})
    treated = cell.loc[cell["control"] != "none"]
    pairs = treated.merge(base, on=PAIR_COLUMNS, how="inner")
    pairs["delta"] = pairs["test_acc"] - pairs["acc_none"]
    if pairs.empty:
        numbers = ["delta", "ci_low", "ci_high", "n", "mean_none", "mean_control"]
        table = pd.DataFrame({"method": pd.Series(dtype=object), "control": pd.Series(dtype=object),
                              **{c: pd.Series(dtype=np.float64) for c in numbers}})
    else:
        table = grouped_mean_ci(pairs, ["method", "control"], "delta", n_boot=n_boot, seed=seed,
                                min_size=MIN_CONTEXTS).rename(columns={"mean": "delta"})
        means = pairs.groupby(["method", "control"]).agg(
            mean_none=("acc_none", "mean"), mean_control=("test_acc", "mean")).reset_index()
        table = table.merge(means, on=["method", "control"])

    # Corrupt controls on methods whose masks do not use data: one row each, numbers null.
    trials = results.trials
    corrupt = sorted(set(trials["control"].unique()) & set(CORRUPT_CONTROLS))
    data_free = sorted(set(trials["method"].unique()) & DATA_FREE_METHODS)
    inapplicable = pd.concat([
        pd.DataFrame([(m, c) for m in data_free for c in corrupt], columns=["method", "control"]),
        _unchanged_masks(done, PAIR_COLUMNS),
    ], ignore_index=True).drop_duplicates()
    if table.empty and inapplicable.empty:
        return pd.DataFrame(columns=columns)
    table = table.merge(inapplicable.assign(_na=True), on=["method", "control"], how="outer")
    na = table["_na"].eq(True).to_numpy()
    table["n"] = table["n"].fillna(0).astype("int64")
    verdict = np.select(
        [na, table["n"] < MIN_CONTEXTS, table["ci_high"] < 0, table["ci_low"] > 0],
        [NOT_APPLICABLE, "too_few_runs", "hurts", "helps"], default="no_effect",
    )
    table["verdict"] = verdict
    table.loc[na | (table["n"] < MIN_CONTEXTS).to_numpy(), ["ci_low", "ci_high"]] = np.nan
    table.loc[na, ["delta", "mean_none", "mean_control"]] = np.nan
    table["interpretation"] = [_interpret(c, v) for c, v in zip(table["control"], table["verdict"])]
    return table[columns].sort_values(["method", "control"]).reset_index(drop=True)
