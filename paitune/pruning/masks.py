"""Masks as objects: the ``Masks`` result of ``prune``, applying them, keeping them applied, hashing.

Training keeps pruned weights at exactly zero by zeroing them once and re-zeroing them after every
optimizer step (one fused ``torch._foreach_mul_`` over the prunable weights). That costs one
elementwise pass per step, against ``torch.nn.utils.prune``'s extra multiply in every forward and
backward; momentum and weight decay cannot revive a weight because it is re-zeroed before the
next forward. ``to_torch_prune`` hands the same masks to ``torch.nn.utils.prune`` for interop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import PaituneError
from .layers import parameter_users, prunable_parameters


class Masks(dict):
    """``{parameter name: BoolTensor}`` for every prunable weight, plus what produced it.

    ``weights``: for ``control="reinit"``, freshly drawn values of *all* the model's parameters from
    its own initializer (``apply_masks`` loads them before masking); ``None`` otherwise.
    ``meta``: method, sparsity, allocation, control, iterations, schedule, seed and the per-layer
    target densities, recorded with the trial.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], *, weights=None, meta=None):
        super().__init__(masks)
        self.weights: dict[str, torch.Tensor] | None = weights
        self.meta: dict = dict(meta or {})

    def densities(self) -> dict[str, float]:
        return {name: float(m.float().mean()) if m.numel() else 1.0 for name, m in self.items()}

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self.values()))

    def density(self) -> float:
        total = self.total()
        return self.kept() / total if total else 1.0


def _check_keys(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    unknown = [n for n in masks if n not in params]
    if unknown:
        raise PaituneError(f"masks name parameters the model does not have: {unknown[:3]}")
    for name, m in masks.items():
        if tuple(m.shape) != tuple(params[name].shape):
            raise PaituneError(f"mask for {name} has shape {tuple(m.shape)}, the weight {tuple(params[name].shape)}")
    return params


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Load ``masks.weights`` if the control drew fresh ones, then zero every pruned weight in place."""
    params = _check_keys(model, masks)
    fresh = getattr(masks, "weights", None)
    if fresh:
        for name, value in fresh.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    for name, m in masks.items():
        params[name].mul_(m.to(params[name].device, params[name].dtype))


class MaskEnforcer:
    """Keeps pruned weights exactly zero through training: call it after each optimizer step.

    ``attach(optimizer)`` registers it as the optimizer's step post-hook, so a training loop needs
    no change at all. Masks are converted once to the weights' dtype and device.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        params = _check_keys(model, masks)
        names = [n for n, m in masks.items() if not bool(m.all())]  # dense layers need no work
        self.params = [params[n] for n in names]
        # In each weight's own memory layout (channels-last convolutions too): a plain elementwise pass.
        self.factors = [torch.empty_like(params[n]).copy_(masks[n]) for n in names]
        self._handles = []

    @torch.no_grad()
    def __call__(self, *_args, **_kwargs) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.factors)

    def attach(self, optimizer: torch.optim.Optimizer) -> "MaskEnforcer":
        self._handles.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self()))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def mask_hash(masks: Mapping[str, torch.Tensor]) -> str:
    """A content hash of the masks (names, shapes and bits), the same on every device; 16 hex chars."""
    digest = hashlib.sha256()
    for name in sorted(masks):
        m = masks[name].detach().to("cpu", torch.bool).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(m.shape)).encode())
        digest.update(m.numpy().tobytes())
    return digest.hexdigest()[:16]


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach the masks with ``torch.nn.utils.prune.custom_from_mask`` (weight_orig + weight_mask),
    at every module holding the masked Parameter (each layer of a tied weight), as ``apply_masks``
    zeroes it for all of them."""
    from torch.nn.utils import prune as torch_prune

    _check_keys(model, masks)
    modules = dict(model.named_modules())
    users = parameter_users(model)  # before any custom_from_mask renames a parameter
    for name, m in masks.items():
        for module_name, attr in users[name]:
            module = modules[module_name]
            torch_prune.custom_from_mask(module, attr, m.to(getattr(module, attr).device))


def from_torch_prune(model: nn.Module) -> Masks:
    """Read back the masks a model carries from ``torch.nn.utils.prune`` (its ``*_mask`` buffers),
    keyed by the weight's name; a Parameter masked at several modules (a tied weight) is read once,
    kept where every one of its masks keeps it."""
    names = {id(p): name for name, p in model.named_parameters()}
    masks: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        for buffer_name, buf in module.named_buffers(recurse=False):
            if buffer_name.endswith("_mask"):
                attr = buffer_name[: -len("_mask")]
                orig = names.get(id(module._parameters.get(f"{attr}_orig")))
                name = orig[: -len("_orig")] if orig else f"{module_name}.{attr}" if module_name else attr
                masks[name] = masks[name] & buf.bool() if name in masks else buf.bool()
    return Masks(masks)


def full_masks(model: nn.Module) -> Masks:
    """All-ones masks: the dense model, in the same form as a pruned one."""
    return Masks({n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(model).items()})
