"""Layerwise profiles (per-layer density by method and allocation) and layer collapse.

Masks exist from init on, so these use every trial with control ``none`` whatever its status
(a stopped or failed trial still had its mask), except the dense reference (it has no mask to
profile and never collapses). Layer collapse is the ``collapsed`` flag the
pruning step records (a layer, or the path through the network, left with no weights).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paitune.analysis.load import Results
from paitune.analysis.reference import without_dense


def standard_allocations() -> frozenset[str]:
    """The registered allocations (paitune.pruning, plug-ins included): each a rule. Any other value
    ("searched", "explicit:<hash>") is treated as a per-layer profile found by the search."""
    from paitune.pruning.allocation import allocation_names

    return frozenset(allocation_names())


def profile_levels(results: Results) -> np.ndarray:
    """The sparsity levels a layerwise profile can show: those of the trials with layer rows, sorted."""
    trials = without_dense(results)
    with_layers = trials.loc[trials["tix"].isin(results.layers["tix"].unique())]
    return np.sort(with_layers["sparsity"].dropna().unique())


def default_profile_sparsity(results: Results) -> float | None:
    """The sparsity level shown by default: the median level among trials with layer rows."""
    levels = profile_levels(results)
    return float(levels[(len(levels) - 1) // 2]) if len(levels) else None


def _layers_with_trials(results: Results, sparsity: float | None) -> pd.DataFrame:
    trials = without_dense(results)
    trials = trials.loc[
        trials["control"] == "none",
        ["tix", "model", "method", "allocation", "sparsity", "status", "test_acc", "trial_id"]
        + (["val_acc"] if "val_acc" in trials.columns else []),
    ]
    if sparsity is not None:
        trials = trials.loc[np.isclose(trials["sparsity"], sparsity)]
    return results.layers.merge(trials, on="tix", how="inner")


def layer_profiles(results: Results, sparsity: float | None = None) -> pd.DataFrame:
    """Mean density per (model, method, allocation, layer) at one sparsity level (default: median level).

    {model, method, allocation, sparsity, layer_index, layer, density, n}; n = trials averaged.
    """
    if sparsity is None:
        sparsity = default_profile_sparsity(results)
    columns = ["model", "method", "allocation", "sparsity", "layer_index", "layer", "density", "n"]
    if sparsity is None:
        return pd.DataFrame(columns=columns)
    merged = _layers_with_trials(results, sparsity)
    table = (
        merged.groupby(["model", "method", "allocation", "layer_index", "layer"], observed=True)
        .agg(density=("density", "mean"), n=("density", "size"))
        .reset_index()
    )
    table["sparsity"] = sparsity
    return table[columns]


def searched_profiles(results: Results, sparsity: float | None = None) -> pd.DataFrame:
    """For searched allocations: the best per-layer profile found (highest validation accuracy
    among completed trials; its test_acc shown) beside the mean ERK / uniform profiles of the same
    method and each method's own global profile, over their completed trials.

    The searched best's test_acc is one trial's, the best of many on validation: it describes the
    profile, and its accuracy is optimistic against the means beside it. Whether searching beats
    ERK is what the allocation rankings test (cross-fitted config selection, seeds as units).

    {model, profile, layer_index, layer, density, test_acc, n}; empty when nothing was searched.
    """
    columns = ["model", "profile", "layer_index", "layer", "density", "test_acc", "n"]
    if sparsity is None:
        sparsity = default_profile_sparsity(results)
    if sparsity is None:
        return pd.DataFrame(columns=columns)
    merged = _layers_with_trials(results, sparsity)
    searched = merged.loc[~merged["allocation"].isin(standard_allocations()) & (merged["status"] == "completed")]
    if searched.empty:
        return pd.DataFrame(columns=columns)
    parts = []
    # Picked by validation accuracy (test_acc only where a trial has none), reported on test.
    pick = searched["val_acc"].fillna(searched["test_acc"]) if "val_acc" in searched.columns else searched["test_acc"]
    per_trial = searched.assign(_pick=pick).groupby(["model", "tix"], observed=True)["_pick"].first().reset_index()
    best = per_trial.loc[per_trial.groupby("model")["_pick"].idxmax()]
    chosen = searched.loc[searched["tix"].isin(best["tix"])]
    parts.append(
        chosen.assign(
            profile="searched best: " + chosen["method"] + "/" + chosen["allocation"] + " (" + chosen["trial_id"] + ")",
            n=1,
        )[columns]
    )
    # Completed trials, as the searched best is one; ERK and uniform of the best's own method, so
    # the accuracies beside it differ in the allocation only.
    standard = merged.loc[merged["allocation"].isin(["erk", "uniform", "global"]) & (merged["status"] == "completed")]
    best_method = chosen.groupby("model", observed=True)["method"].first()
    same_method = standard["method"].to_numpy() == standard["model"].map(best_method).to_numpy()
    standard = standard.loc[(standard["allocation"] == "global").to_numpy() | same_method]
    label = np.where(
        standard["allocation"] == "global",
        "global: " + standard["method"],
        standard["allocation"] + ": " + standard["method"],
    )
    means = (
        standard.assign(profile=label)
        .groupby(["model", "profile", "layer_index", "layer"], observed=True)
        .agg(density=("density", "mean"), test_acc=("test_acc", "mean"), n=("density", "size"))
        .reset_index()
    )
    parts.append(means[columns])
    return pd.concat(parts, ignore_index=True)


def layer_collapse(results: Results) -> pd.DataFrame:
    """The highest sparsity each method x allocation reaches without collapse, per dataset x model
    (collapse is a property of a network, so models are never pooled).

    Levels are scanned from the lowest sparsity up; ``max_sparsity_without_collapse`` is the last
    level before the first level where any trial collapsed (null if the lowest already did,
    ``first_collapse_sparsity`` null if none ever did).
    {dataset, model, method, allocation, max_sparsity_without_collapse, first_collapse_sparsity,
    n_trials, n_collapsed, n_levels}
    """
    keys = ["dataset", "model", "method", "allocation"]
    trials = without_dense(results)
    trials = trials.loc[(trials["control"] == "none") & trials["collapsed"].notna()]
    per_level = (
        trials.groupby(keys + ["sparsity"], observed=True)
        .agg(any_collapsed=("collapsed", "any"), n=("collapsed", "size"), n_collapsed=("collapsed", "sum"))
        .reset_index()
    )
    per_level = per_level.sort_values(keys + ["sparsity"])
    first = per_level.loc[per_level["any_collapsed"]].groupby(keys)["sparsity"].min().rename("first_collapse_sparsity")
    per_level = per_level.merge(first.reset_index(), on=keys, how="left")
    safe = per_level.loc[
        per_level["first_collapse_sparsity"].isna() | (per_level["sparsity"] < per_level["first_collapse_sparsity"])
    ]
    best = safe.groupby(keys)["sparsity"].max().rename("max_sparsity_without_collapse")
    totals = per_level.groupby(keys).agg(
        n_trials=("n", "sum"), n_collapsed=("n_collapsed", "sum"), n_levels=("n", "size")
    )
    table = totals.join(best).join(first).reset_index()
    table["n_collapsed"] = table["n_collapsed"].astype("int64")
    return table[
        keys + ["max_sparsity_without_collapse", "first_collapse_sparsity", "n_trials", "n_collapsed", "n_levels"]
    ]
