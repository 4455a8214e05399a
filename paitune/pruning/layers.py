"""Which parameters are prunable, and their shapes.

Prunable = the weight of every Conv and Linear layer (DESIGN.md); biases and norm layers never are.
Names are ``model.named_parameters()`` names, in that order (input to output for the usual models),
which is the order every allocation rule below takes as "depth".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import PaituneError

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, keyed by parameter name, in ``named_parameters`` order."""
    owners = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and module.weight is not None:
            owners[id(module.weight)] = f"{module_name}.weight" if module_name else "weight"
    # named_parameters de-duplicates shared parameters; walk it for the canonical names and order.
    return {name: p for name, p in model.named_parameters() if id(p) in owners}


def check_plain_weights(model: nn.Module) -> None:
    """A PaituneError for a Conv/Linear weight that is not a plain parameter: one under
    ``torch.nn.utils.prune`` (weight_orig * weight_mask) or ``torch.nn.utils.parametrize`` is
    computed anew on each forward, so ``prunable_parameters`` cannot own it, and scoring it would
    silently leave the layer out of the mask."""
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        shown = name or type(module).__name__
        if parametrize.is_parametrized(module, "weight"):
            raise PaituneError(
                f"layer {shown!r} has a torch.nn.utils.parametrize weight: call "
                "parametrize.remove_parametrizations on it before pruning"
            )
        if hasattr(module, "weight_orig"):
            raise PaituneError(
                f"layer {shown!r} is already pruned with torch.nn.utils.prune: call "
                "torch.nn.utils.prune.remove(module, 'weight') first (from_torch_prune reads its mask)"
            )


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
