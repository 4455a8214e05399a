"""The working copy every proxy runs on, and the input checks they share.

Each proxy gets its own fresh deep copy of the caller's model with the masks multiplied into the
weights, so no proxy can change the model or see another proxy's gradients, running statistics
or modified weights. (grad_norm and snip, two functions of the same loss gradients, are computed
from one copy and one backward pass: the very computation each would run on a copy of its own.)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from paitune.errors import PaituneError
from paitune.models.scratch import scratch_copy

# "Prunable" as in Abdelfattah et al.'s code: the weights of convolution and linear layers.
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class PrunableLayer:
    """One Conv/Linear layer of the working copy and the mask of its weight (None = dense)."""

    name: str  # qualified module name ("" for a model that is itself one layer)
    module: nn.Module
    mask: torch.Tensor | None  # bool, same shape and device as module.weight

    def masked(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (weight-shaped) with the pruned positions zeroed."""
        return tensor if self.mask is None else tensor * self.mask

    def kept_per_output_channel(self) -> torch.Tensor:
        """How many unpruned weights feed each output channel (fan-in when dense)."""
        weight = self.module.weight
        if self.mask is None:
            return torch.full((weight.shape[0],), weight[0].numel(), device=weight.device)
        return self.mask.reshape(weight.shape[0], -1).sum(dim=1)


@dataclass(frozen=True)
class MaskedNet:
    """A private copy of the model with the masks applied, ready for one proxy."""

    net: nn.Module
    layers: list[PrunableLayer]
    masks: dict[str, torch.Tensor]  # parameter name -> bool mask, on the parameter's device


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Conv/Linear modules of ``model`` in ``named_modules`` order (each module once)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


def check_batch(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` on ``device``, detached from any graph of the caller's."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise PaituneError("batch must be a pair (x, y) of tensors: inputs and int64 class labels")
    x, y = batch
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise PaituneError("batch must be a pair (x, y) of tensors: inputs and int64 class labels")
    if x.dim() < 2 or x.shape[0] == 0:
        raise PaituneError(f"batch inputs must have shape (batch, *input_shape) with batch >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise PaituneError(f"batch inputs must be floating point (input gradients), got {x.dtype}")
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise PaituneError(
            f"batch labels must be integer class indices of shape ({x.shape[0]},), "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )
    return x.detach().to(device), y.detach().to(device=device, dtype=torch.long)


def check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Masks as bool tensors keyed by parameter name, after checking names and shapes."""
    if masks is None:
        return {}
    params = dict(model.named_parameters())
    checked = {}
    for name, mask in masks.items():
        if name not in params:
            examples = ", ".join(list(params)[:5])
            raise PaituneError(
                f"mask for unknown parameter {name!r}; masks are keyed by "
                f"model.named_parameters() names such as: {examples}"
            )
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(params[name].shape):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise PaituneError(
                f"mask for {name!r} has shape {shape}; it must match the parameter's shape {tuple(params[name].shape)}"
            )
        # Accept torch.nn.utils.prune's float 0/1 masks too, but never a tensor of scores.
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise PaituneError(f"mask for {name!r} must be boolean (or 0/1); got other values")
        checked[name] = mask.detach().bool()
    return checked


def working_copy(model: nn.Module, masks: dict[str, torch.Tensor]) -> MaskedNet:
    """A deep copy of ``model`` with ``weight * mask`` applied and prunable weights trainable.

    ``masks`` are keyed by the model's parameter names; a layer pruned with
    ``torch.nn.utils.prune`` brings its own mask (keyed ``*.weight_orig`` if narrowed further).
    """
    net = _deepcopy(model)
    renamed, found = _bake_torch_prune_masks(net)
    params = dict(net.named_parameters())
    combined = dict(found)
    for name, mask in masks.items():
        name = renamed.get(name, name)
        if name in combined:  # a torch.nn.utils.prune mask and the caller's: keep both
            mask = combined[name] & mask.to(combined[name].device)
        combined[name] = mask
    on_device = {name: mask.to(params[name].device) for name, mask in combined.items()}
    with torch.no_grad():
        for name, mask in on_device.items():
            params[name].mul_(mask)
    names_by_id = {id(p): name for name, p in params.items()}
    layers = []
    for name, module in prunable_layers(net):
        # Gradients w.r.t. every prunable weight are the definition of the proxies, even for a
        # weight the caller froze.
        module.weight.requires_grad_(True)
        mask = on_device.get(names_by_id[id(module.weight)])
        layers.append(PrunableLayer(name=name, module=module, mask=mask))
    return MaskedNet(net=net, layers=layers, masks=on_device)


def _deepcopy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` (a ``scratch_copy``: its forward must return one Tensor), also for
    modules that hold computed (non-leaf) tensors.

    torch.nn.utils.prune stores the masked weight as a plain attribute computed with autograd,
    which deepcopy refuses; its forward pre-hook recomputes it anyway, so a detached copy will do.
    """
    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return scratch_copy(model, memo)


def _bake_torch_prune_masks(net: nn.Module) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Turn each ``torch.nn.utils.prune``-pruned weight of ``net`` (a private copy) into a plain
    parameter holding weight_orig * weight_mask, and its mask into one of ours.

    Returns the renamed parameters {old name: new name} and the masks found. A weight under
    ``torch.nn.utils.parametrize`` is refused: it has no plain parameter to score.
    """
    renamed: dict[str, str] = {}
    found: dict[str, torch.Tensor] = {}
    for name, module in prunable_layers(net):
        prefix = f"{name}." if name else ""
        if parametrize.is_parametrized(module, "weight"):
            # Removing it from the copy would break the caller's model too: the two share the
            # dynamically created parametrized class.
            raise PaituneError(
                f"layer {name or type(module).__name__!r} has a torch.nn.utils.parametrize "
                "weight; call parametrize.remove_parametrizations on it first and pass its "
                "mask as masks="
            )
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            found[f"{prefix}weight"] = module.weight_mask.detach().bool()
            prune.remove(module, "weight")
            renamed[f"{prefix}weight_orig"] = f"{prefix}weight"
    return renamed, found


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def train_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in train mode, as in Abdelfattah et al., for the forward passes run inside.

    Batch norm normalizes by the statistics of the batch it sees, a (1, C, H, W) map of one sample
    included (over its positions). Only where a call would see a single value per channel (a
    BatchNorm1d on (1, C), a 1x1 map of one sample), which has no batch statistics (train mode
    raises), does that call use the layer's running statistics instead; a layer that keeps none
    (``track_running_stats=False``) normalizes each value by itself, to 0, and outputs its bias,
    what train mode computes without its guard. Decided per call, so the batch size alone never
    switches a layer. Use on a private working copy: the net stays in train mode (and its batch
    norms in the mode of their last call).
    """
    net.train()
    handles = []
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(_batch_statistics_where_defined))
            if not module.track_running_stats:
                handles.append(module.register_forward_hook(_normalized_to_zero))
    try:
        yield net
    finally:
        for handle in handles:
            handle.remove()


def _batch_statistics_where_defined(module: nn.Module, inputs: tuple) -> None:
    """Train mode for this call of a batch norm unless its input has one value per channel."""
    z = inputs[0]
    module.training = z.numel() // z.shape[1] > 1
    if not module.training and not module.track_running_stats:
        # Stand-in statistics that let this one call run; _normalized_to_zero replaces its output.
        module.running_mean = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
        module.running_var = torch.ones_like(module.running_mean)


def _normalized_to_zero(module: nn.Module, inputs: tuple, output: torch.Tensor):
    """A value normalized by its own statistics is 0: the call outputs the layer's bias (0 without
    an affine part), and no gradient reaches its input or weight, as in batch norm's formula."""
    if module.running_mean is None:  # a call with batch statistics: nothing to replace
        return None
    module.running_mean = None
    module.running_var = None
    if module.bias is None:
        return torch.zeros_like(output)
    return module.bias.view(1, -1, *([1] * (output.dim() - 2))).expand_as(output)


def cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss every data-driven proxy differentiates: CE with mean reduction, T = 1."""
    return nn.functional.cross_entropy(net(x), y)


@contextmanager
def fixed_rng(device: torch.device) -> Iterator[None]:
    """Seed the RNG for one proxy (dropout masks) and restore the caller's RNG state after.

    Makes each proxy a deterministic function of model and batch, whatever the caller's RNG.
    """
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    # Fork and seed only the CPU generator and the model's own GPU: other devices' RNG streams
    # belong to the caller.
    with torch.random.fork_rng(devices=cuda_devices):
        torch.random.default_generator.manual_seed(0)
        for index in cuda_devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(0)
        yield
