"""Which parameters are prunable, and their shapes.

Prunable = the weight of every Conv and Linear layer (DESIGN.md); biases and norm layers never are.
Names are ``model.named_parameters()`` names, in that order (input to output for the usual models),
which is the order every allocation rule below takes as "depth".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils import parametrize
from torch.nn.utils.prune import BasePruningMethod
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from ..errors import PaituneError

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Transposed convolutions: a model holding one is refused (``check_prunable_layers``).
UNPRUNABLE_CONV_TYPES = (nn.modules.conv._ConvTransposeNd,)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, keyed by parameter name, in ``named_parameters`` order."""
    owners = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and module.weight is not None:
            owners[id(module.weight)] = f"{module_name}.weight" if module_name else "weight"
    # named_parameters de-duplicates shared parameters; walk it for the canonical names and order.
    return {name: p for name, p in model.named_parameters() if id(p) in owners}


def parameter_users(model: nn.Module) -> dict[str, list[tuple[str, str]]]:
    """Each parameter's name (``named_parameters``, which lists a shared parameter once, under its
    first name) -> every (module name, attribute) holding that very Parameter: more than one for a
    tied weight (``b.weight = a.weight``; an Embedding tied to the output Linear). Whatever is done
    to a masked weight (its FLOPs scaled, a torch.nn.utils.prune mask attached) is done at each."""
    names = {id(p): name for name, p in model.named_parameters()}
    users: dict[str, list[tuple[str, str]]] = {}
    for module_name, module in model.named_modules():
        for attr, p in module._parameters.items():
            if p is not None and id(p) in names:
                users.setdefault(names[id(p)], []).append((module_name, attr))
    return users


def check_plain_weights(model: nn.Module) -> None:
    """A PaituneError (one line naming the layer and the fix) for a Conv/Linear layer whose ``weight``
    is not a plain ``nn.Parameter`` registered on it.

    Such a weight is computed anew on each forward (``torch.nn.utils.prune``: weight_orig *
    weight_mask; ``parametrize``; the old ``weight_norm``: from weight_g and weight_v; the old
    ``spectral_norm``: from weight_orig) or not there yet (a lazy module): ``prunable_parameters``
    cannot own it, so scoring would silently leave the layer out of the mask, or fail.
    """
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            problem = _weight_problem(module)
            if problem:
                raise PaituneError(f"layer {name or type(module).__name__!r} {problem}")


def _weight_problem(module: nn.Module) -> str | None:
    """What keeps ``module.weight`` from being a plain parameter, and its fix; None when it is one."""
    if parametrize.is_parametrized(module, "weight"):
        return "has a torch.nn.utils.parametrize weight: call parametrize.remove_parametrizations on it before pruning"
    if isinstance(module._parameters.get("weight"), UninitializedParameter):
        return "is a lazy module whose weight is not initialized yet: run one forward pass of the model first"
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == "weight":
            return (
                "is already pruned with torch.nn.utils.prune: call torch.nn.utils.prune.remove(module, 'weight') "
                "first (from_torch_prune reads its mask)"
            )
        if isinstance(hook, WeightNorm) and hook.name == "weight":
            return (
                "has a torch.nn.utils.weight_norm weight (computed from weight_g and weight_v on each forward): "
                "call torch.nn.utils.remove_weight_norm on it before pruning"
            )
        if isinstance(hook, SpectralNorm) and hook.name == "weight":
            return (
                "has a torch.nn.utils.spectral_norm weight (computed from weight_orig on each forward): "
                "call torch.nn.utils.remove_spectral_norm on it before pruning"
            )
    if not isinstance(module._parameters.get("weight"), nn.Parameter):
        return (
            f"has a weight that is not an nn.Parameter registered on the layer (a {type(module.weight).__name__} "
            "computed elsewhere): make it the layer's own parameter before pruning"
        )
    return None


def check_prunable_layers(model: nn.Module) -> None:
    """A PaituneError naming a layer that has Conv-like weights paitune cannot prune: a transposed
    convolution (ConvTranspose1d/2d/3d). Pruning it properly needs its own FLOP count, collapse
    probe and allocation rules; left dense and out of the count, it would falsify the sparsity."""
    for name, module in model.named_modules():
        if isinstance(module, UNPRUNABLE_CONV_TYPES):
            raise PaituneError(
                f"layer {name or type(module).__name__!r} is a {type(module).__name__}, which paitune cannot prune "
                "(prunable weights are those of Conv1d/2d/3d and Linear layers): use a model without transposed "
                "convolutions"
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
