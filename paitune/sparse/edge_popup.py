"""Sparse selection: edge-popup (Ramanujan et al. 2020), a subnetwork found in frozen random weights.

Every prunable weight keeps its initial value and gets a learned score; the forward pass uses only
the weights whose |score| is among the top k (k = density x weights of the layer under a fixed
allocation, or the top k of the whole net under an allocation that ranks scores: global, lamp).
The top-k choice has no gradient, so the scores learn through the straight-through estimator: the
forward multiplies each weight by mask + |s| - stop_gradient(|s|), whose value is the mask and
whose gradient w.r.t. |s| is the weight's (dL/d(effective weight) x weight) — the paper's update
rule.

Scores start at the paper's Kaiming-uniform scale, which differs per layer (1/sqrt(fan_in)), so the
"global" ranking compares |s| * sqrt(fan_in): at initialization it is then a uniformly random choice
across layers (like ``prune(model, "random", allocation="global")``) instead of one that empties the
layers with the largest fan-in. An allocation that normalizes scores (LAMP) ranks the normalized
|s| instead, which is scale-free per layer already.

The wrapped network is left as it is (same parameter names, so masks and reports use them); the
wrapper evaluates it with ``torch.func.functional_call`` and the masked weights, and freezes every
parameter of it (weights and biases: the random network is fixed, only the scores train).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ..errors import unknown_choice
from ..pruning import Masks, prunable_parameters
from ..pruning.allocation import check_sparsity
from .config import POPUP_WEIGHT_INITS
from .selection import global_top_k, keep_counts, layer_densities, magnitude_normalizer, top_k_mask


def _fan_in(weight: torch.Tensor) -> int:
    return max(1, weight[0].numel())


class EdgePopupNet(nn.Module):
    """``net`` with frozen weights and a learned top-k mask; only ``scores`` are trainable.

    ``weight_init``: "signed_constant" replaces each weight by sign(w) * sqrt(2 / fan_in) (the
    paper's signed Kaiming constant, the signs from the model's own init), "model" keeps the
    model's init. Scores start uniform in +-1/sqrt(fan_in) (the paper's Kaiming-uniform), seeded.
    """

    def __init__(self, net: nn.Module, *, sparsity: float, allocation="global",
                 weight_init: str = "signed_constant", seed: int = 0):  # fmt: skip
        super().__init__()
        if weight_init not in POPUP_WEIGHT_INITS:
            raise unknown_choice("popup_weight_init", weight_init, POPUP_WEIGHT_INITS)
        self.net = net
        self.input_shape = getattr(net, "input_shape", None)
        self.sparsity = check_sparsity(sparsity)
        self.allocation = allocation
        weights = prunable_parameters(net)
        self.names = list(weights)
        for p in net.parameters():
            p.requires_grad_(False)
        if weight_init == "signed_constant":
            with torch.no_grad():
                for w in weights.values():
                    w.copy_(torch.where(w >= 0, 1.0, -1.0) * math.sqrt(2.0 / _fan_in(w)))
        generator = torch.Generator().manual_seed(int(seed))
        self.scores = nn.ParameterList()
        self.rank_scale = {name: math.sqrt(_fan_in(w)) for name, w in weights.items()}
        for w in weights.values():
            bound = 1.0 / math.sqrt(_fan_in(w))
            init = (torch.rand(w.shape, generator=generator, dtype=torch.float32) * 2 - 1) * bound
            self.scores.append(nn.Parameter(init.to(w.device, w.dtype)))
        shapes = {name: tuple(w.shape) for name, w in weights.items()}
        densities = layer_densities(shapes, self.sparsity, allocation)
        sizes = {name: w.numel() for name, w in weights.items()}
        self.counts = None if densities is None else keep_counts(sizes, densities)
        self.keep_total = int(round((1.0 - self.sparsity) * sum(sizes.values())))

    def frozen_weights(self) -> dict[str, torch.Tensor]:
        return prunable_parameters(self.net)

    @torch.no_grad()
    def current_masks(self) -> Masks:
        """The top-k masks the forward pass uses now."""
        magnitude = {name: s.detach().abs() for name, s in zip(self.names, self.scores)}
        if self.counts is not None:
            masks = {name: top_k_mask(magnitude[name], self.counts[name]) for name in self.names}
        else:
            normalize = magnitude_normalizer(self.allocation)
            if normalize is not None:
                ranked = normalize(magnitude)
            else:
                ranked = {name: v * self.rank_scale[name] for name, v in magnitude.items()}
            masks = global_top_k(ranked, self.keep_total)
        meta = {"method": "edge_popup", "sparsity": self.sparsity, "allocation": self.allocation}
        return Masks(masks, meta=meta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = self.current_masks()
        weights = self.frozen_weights()
        effective = {}
        for name, score in zip(self.names, self.scores):
            magnitude = score.abs()
            gate = masks[name].to(magnitude.dtype) + magnitude - magnitude.detach()
            effective[name] = weights[name] * gate
        return functional_call(self.net, effective, (x,))
