"""Which parameters are prunable, and their shapes.

Prunable = the weight of every Conv and Linear layer (DESIGN.md); biases and norm layers never are.
Names are ``model.named_parameters()`` names, in that order (input to output for the usual models),
which is the order every allocation rule below takes as "depth".
"""

from __future__ import annotations

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, keyed by parameter name, in ``named_parameters`` order."""
    owners = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and module.weight is not None:
            owners[id(module.weight)] = f"{module_name}.weight" if module_name else "weight"
    # named_parameters de-duplicates shared parameters; walk it for the canonical names and order.
    return {name: p for name, p in model.named_parameters() if id(p) in owners}


def layer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Prunable weight shapes by name, the input ``allocate`` takes."""
    return {name: tuple(p.shape) for name, p in prunable_parameters(model).items()}


def is_conv_shape(shape: tuple[int, ...]) -> bool:
    """Conv weights have kernel dims (out, in, k...); Linear weights are (out, in)."""
    return len(shape) >= 3


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def empty_like_masks(params: dict[str, torch.Tensor], value: bool) -> dict[str, torch.Tensor]:
    return {name: torch.full(p.shape, value, dtype=torch.bool, device=p.device) for name, p in params.items()}
