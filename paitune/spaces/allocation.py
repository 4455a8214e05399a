"""Searched allocations: sampled per-layer weights -> an explicit {layer: density} map.

The search samples relative weights (one per layer, or one slope over depth); the map scales them
so the layers together keep exactly the density the trial's sparsity asks for. A searched
allocation thus competes with ERK or uniform at the same parameter budget, which is the question
automated sparsity allocation asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def scale_to_budget(sizes: Mapping[str, int], weights: Mapping[str, float], density: float) -> dict[str, float]:
    """density_l = c * weight_l with sum_l density_l * size_l = density * sum_l size_l, capped at 1.

    Layers whose scaled density would exceed 1 are made dense and c is solved again for the rest;
    making a layer dense only raises c, so every layer over 1 can be made dense at once.
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if any(w <= 0 or not math.isfinite(w) for w in weights.values()):
        raise ValueError(f"layer weights must be finite and > 0, got {dict(weights)}")
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in sizes if n not in dense]
        left = budget - sum(sizes[n] for n in dense)
        if not free:
            return {n: 1.0 for n in sizes}
        scale = left / sum(weights[n] * sizes[n] for n in free)
        over = [n for n in free if scale * weights[n] > 1.0]
        if not over:
            return {n: 1.0 if n in dense else scale * weights[n] for n in sizes}
        dense.update(over)


def depth_weights(layers: Sequence[str], slope: float) -> dict[str, float]:
    """weight_l = exp(slope * t_l), t_l running from 0 (first layer) to 1 (last layer)."""
    last = max(len(layers) - 1, 1)
    return {name: math.exp(slope * i / last) for i, name in enumerate(layers)}


def searched_allocation(
    shapes: Mapping[str, Sequence[int]], sparsity: float, weights: Mapping[str, float]
) -> dict[str, float]:
    """The explicit per-layer map for relative ``weights`` at ``sparsity``."""
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    return scale_to_budget(sizes, weights, 1.0 - sparsity)
