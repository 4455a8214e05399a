"""PHEW (Patil & Dovrolis 2021): a data-free mask from random walks biased by |w|.

The prunable layers in order form a chain (layer l: in units shape[1], out units shape[0]). A
forward walk starts at an in unit of the first layer and, layer by layer, takes one weight of the
unit's column with probability proportional to |w| (uniform if all are 0) and moves to that
weight's out unit; a backward walk starts at an out unit of the last layer and takes one weight of
the unit's row. Between layers a unit carries over when the sizes agree, maps through a flatten
(channel c <-> features [c*s, (c+1)*s)) when the next layer is s times wider, and is drawn
uniformly otherwise. Walks alternate forward (in units 0, 1, ... round robin) and backward (out
units 0, 1, ...), forward first; every weight a walk takes is kept, until exactly k are.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PaituneError
from .layers import prunable_parameters
from .registry import MethodSpec, ScoringInputs
from .seeds import derived_seed
from .selection import keep_count

STALL_WALKS = 100_000  # walks in a row that add no weight: the rest is unreachable (|w| = 0)


class _Uniforms:
    """Uniform draws in [0, 1) from one seeded stream, fetched in blocks."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.block = self.rng.random(1 << 16)
        self.i = 0

    def __call__(self) -> float:
        if self.i == len(self.block):
            self.block, self.i = self.rng.random(1 << 16), 0
        self.i += 1
        return float(self.block[self.i - 1])

    def below(self, n: int) -> int:
        return min(int(self() * n), n - 1)


def _pick(row: np.ndarray, u: float) -> int:
    """An index of ``row`` (a cumulative sum) drawn proportionally to its increments; uniform if all 0."""
    total = row[-1]
    if total <= 0:
        return min(int(u * len(row)), len(row) - 1)
    return min(int(np.searchsorted(row, u * total, side="right")), len(row) - 1)


class _Layer:
    def __init__(self, weight: torch.Tensor):
        w = weight.detach().abs().double().cpu().numpy()
        self.out_units, self.in_units = w.shape[0], w.shape[1]
        self.kernel = int(np.prod(w.shape[2:], dtype=np.int64))
        w = w.reshape(self.out_units, self.in_units, self.kernel)
        self.forward = np.cumsum(w.transpose(1, 0, 2).reshape(self.in_units, -1), axis=1)
        self.backward = np.cumsum(w.reshape(self.out_units, -1), axis=1)
        self.kept = np.zeros(w.size, dtype=bool)


def _next_in(prev: _Layer, nxt: _Layer, out_unit: int, draw: _Uniforms) -> int:
    if nxt.in_units == prev.out_units:
        return out_unit
    if nxt.in_units % prev.out_units == 0:  # a flatten: channel c feeds features [c*s, (c+1)*s)
        s = nxt.in_units // prev.out_units
        return out_unit * s + draw.below(s)
    return draw.below(nxt.in_units)


def _prev_out(prev: _Layer, nxt: _Layer, in_unit: int, draw: _Uniforms) -> int:
    if nxt.in_units == prev.out_units:
        return in_unit
    if nxt.in_units % prev.out_units == 0:
        return in_unit // (nxt.in_units // prev.out_units)
    return draw.below(prev.out_units)


def phew_masks(weights: dict[str, torch.Tensor], k: int, seed: int) -> dict[str, torch.Tensor]:
    """Keep exactly k weights, those the alternating walks take first."""
    names = list(weights)
    layers = [_Layer(w) for w in weights.values()]
    total = sum(layer.kept.size for layer in layers)
    if k >= total:
        return {n: torch.ones(w.shape, dtype=torch.bool) for n, w in weights.items()}
    draw = _Uniforms(seed)
    kept, walk, stalled = 0, 0, 0
    first, last = layers[0], layers[-1]
    while kept < k:
        before = kept
        if walk % 2 == 0:  # forward, from the first layer's in units in turn
            unit = (walk // 2) % first.in_units
            for index, layer in enumerate(layers):
                j = _pick(layer.forward[unit], draw())
                out_unit, position = divmod(j, layer.kernel)
                flat = (out_unit * layer.in_units + unit) * layer.kernel + position
                if not layer.kept[flat]:
                    layer.kept[flat] = True
                    kept += 1
                    if kept == k:
                        break
                if index + 1 < len(layers):
                    unit = _next_in(layer, layers[index + 1], out_unit, draw)
        else:  # backward, from the last layer's out units in turn
            unit = (walk // 2) % last.out_units
            for index in range(len(layers) - 1, -1, -1):
                layer = layers[index]
                j = _pick(layer.backward[unit], draw())
                flat = unit * layer.in_units * layer.kernel + j
                if not layer.kept[flat]:
                    layer.kept[flat] = True
                    kept += 1
                    if kept == k:
                        break
                if index > 0:
                    unit = _prev_out(layers[index - 1], layer, j // layer.kernel, draw)
        walk += 1
        stalled = stalled + 1 if kept == before else 0
        if stalled >= STALL_WALKS:
            raise PaituneError(
                f"phew: the walks reach only {kept} of the {k} weights to keep (the rest have |w| = 0); "
                "lower the density"
            )
    return {
        name: torch.from_numpy(layer.kept.reshape(tuple(weights[name].shape)).copy())
        for name, layer in zip(names, layers)
    }


def _build_mask(inputs: ScoringInputs, density: float) -> dict[str, torch.Tensor]:
    weights = prunable_parameters(inputs.model)
    k = keep_count(density, sum(w.numel() for w in weights.values()))
    return phew_masks(dict(weights), k, derived_seed(inputs.seed, "phew"))


SPEC = MethodSpec("phew", build_mask=_build_mask)
