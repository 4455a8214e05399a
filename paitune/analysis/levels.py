"""Sparsity levels: compression ratios, and binning of continuously sampled sparsity.

Every per-level statistic (accuracy vs sparsity, rankings within a context, sanity pairs, layer
collapse, ...) groups trials by their exact ``sparsity``. A grid sweep has a handful of levels; a
sweep that samples sparsity from a continuous distribution has (almost) one level per trial, and
every per-level statistic would then rest on one run. Such an experiment's sparsities are binned
to the nearest point of a log-spaced grid of compression ratios (half-octave steps: 1, 1.41, 2,
2.83, 4, ... — the standard operating points 2, 4, 8, 16, 32, ... lie on it), and the analysis
says so in its notes. The sampled value is kept as ``sparsity_raw``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from paitune.analysis.load import Results

# An experiment is treated as continuously sampled when it has more distinct sparsity values than
# a grid sweep plausibly would, or when most of its (pruned) trials have a value of their own.
MAX_GRID_LEVELS = 24
MIN_LEVELS_FOR_UNIQUE_RULE = 8
UNIQUE_SHARE = 0.5
# Bin width: half an octave of compression ratio (ratio steps of sqrt(2)).
STEPS_PER_OCTAVE = 2


def compression_ratio(sparsity) -> np.ndarray:
    """1 / density: 2 at sparsity 0.5, 10 at 0.9, 1 for the dense model, inf at sparsity 1."""
    density = 1.0 - np.asarray(sparsity, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(density > 0, 1.0 / np.where(density > 0, density, 1.0), np.inf)


def bin_to_ratio_grid(sparsity, steps_per_octave: int = STEPS_PER_OCTAVE) -> np.ndarray:
    """Each sparsity moved to the nearest grid point 1 - 2**(-k / steps_per_octave) (nearest in
    log compression ratio). Sparsity 0 stays 0; sparsity 1 (nothing kept) stays 1."""
    s = np.asarray(sparsity, dtype=np.float64)
    ratio = compression_ratio(s)
    finite = np.isfinite(ratio) & (ratio >= 1.0)
    k = np.round(steps_per_octave * np.log2(np.where(finite, ratio, 1.0)))
    binned = 1.0 - 2.0 ** (-k / steps_per_octave)
    return np.where(finite, binned, s)


def continuous_experiments(trials: pd.DataFrame) -> list[str]:
    """Experiments whose pruned trials' sparsity looks sampled from a continuous distribution."""
    pruned = trials.loc[trials["sparsity"].notna() & (trials["sparsity"] > 0), ["experiment", "sparsity"]]
    if pruned.empty:
        return []
    stats = pruned.groupby("experiment", observed=True)["sparsity"].agg(["nunique", "size"])
    continuous = (stats["nunique"] > MAX_GRID_LEVELS) | (
        (stats["nunique"] >= MIN_LEVELS_FOR_UNIQUE_RULE) & (stats["nunique"] > UNIQUE_SHARE * stats["size"])
    )
    return sorted(map(str, stats.index[continuous.to_numpy()]))


def bin_continuous_sparsity(results: Results) -> tuple[Results, list[str]]:
    """(results with binned sparsity where sampled continuously, the binned experiments).

    Unbinned results are returned as they are (same object). Binned ones get ``sparsity`` on the
    grid and the sampled value in ``sparsity_raw``; epochs and layers are shared, not copied.
    """
    experiments = continuous_experiments(results.trials)
    if not experiments:
        return results, []
    trials = results.trials.copy()
    hit = trials["experiment"].isin(experiments).to_numpy()
    raw = trials["sparsity"].to_numpy(dtype=np.float64)
    trials["sparsity_raw"] = raw
    trials["sparsity"] = np.where(hit, bin_to_ratio_grid(raw), raw)
    return dataclasses.replace(results, trials=trials), experiments


def binning_note(experiments: list[str]) -> str:
    """The sentence the report shows when sparsity was binned (empty when it was not)."""
    if not experiments:
        return ""
    return (
        f"sparsity was sampled continuously in {', '.join(experiments)}: for the per-level statistics "
        f"it is binned to the nearest compression ratio of a log grid with {STEPS_PER_OCTAVE} steps per "
        "doubling (1, 1.41, 2, 2.83, 4, ...); the sampled value is in the column sparsity_raw"
    )
