"""The cost proxies: parameter count and forward FLOPs of the (pruned) network.

Both are the cheapest baselines a zero-cost proxy has to beat (Abdelfattah et al. 2021 report
them beside the gradient proxies).
"""

from __future__ import annotations

import torch

from paitune.models.flops import forward_flops
from paitune.proxies.network import MaskedNet


def params(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Number of parameters of the pruned net: all parameters less the pruned entries."""
    total = sum(p.numel() for p in masked.net.parameters())
    pruned = sum(int((~mask).sum()) for mask in masked.masks.values())
    return float(total - pruned)


def flops(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward FLOPs for one sample, as torch.utils.flop_counter counts them (2 per MAC).

    Each Conv/Linear layer's count is scaled by its mask density (a pruned weight does no
    multiply-accumulate); every other op counts in full.
    """
    net = masked.net
    # FLOPs do not depend on the mode; in eval mode no batch norm's running statistics move.
    net.eval()
    total, per_module = forward_flops(net, x)
    for layer in masked.layers:
        if layer.mask is None:
            continue
        layer_flops = float(per_module.get(layer.name, 0))
        density = int(layer.mask.sum()) / layer.mask.numel()
        total -= layer_flops * (1.0 - density)
    return float(total)
