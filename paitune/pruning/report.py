"""What a mask does to a network: densities, kept parameters, FLOPs, and layer collapse.

FLOPs come from ``torch.utils.flop_counter`` (through ``paitune.models.flops``; one sample, a
multiply-add counted as 2), per module; a pruned layer's count is scaled by its density (the work a
sparse kernel would do), every other op counts in full. Layer collapse (Tanaka et al. 2020) is a
layer with nothing kept, or no path left from the input to the output: checked by one forward pass
of the masked net with every weight set to mask / fan-in, biases zeroed and every normalization
layer (batch, instance, layer, group norm) replaced by the identity, so the output is positive
exactly when some input-to-output path survives (averaging keeps float64 far from under/overflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..models.copying import copy_module
from ..models.flops import forward_flops
from ..models.norms import NORM_TYPES, replaced_by_identity
from ..models.scratch import scratch_copy
from .layers import parameter_users, prunable_parameters


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, ...]
    numel: int
    kept: int
    density: float
    flops_dense: int


@dataclass
class MaskReport:
    layers: list[LayerReport]
    params_total: int  # prunable weights
    params_kept: int
    density: float
    flops_dense: int
    flops_sparse: int
    collapsed_layers: list[str] = field(default_factory=list)  # layers with nothing kept
    disconnected: bool = False  # no input-to-output path left
    input_shape: tuple[int, ...] | None = None

    @property
    def collapsed(self) -> bool:
        return bool(self.collapsed_layers) or self.disconnected

    @property
    def densities(self) -> dict[str, float]:
        return {layer.name: layer.density for layer in self.layers}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["collapsed"] = self.collapsed
        return out


def _weight_flops(name: str, per_module: dict[str, int], users: dict[str, list[tuple[str, str]]]) -> int:
    """The FLOPs of every module using weight ``name`` (each layer of a tied weight)."""
    modules = {module_name for module_name, _ in users.get(name, ())} or {name.rpartition(".")[0]}
    return sum(per_module.get(module_name, 0) for module_name in modules)


def layer_flops(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """Total forward FLOPs for one sample, and FLOPs per module path (``""`` for the root)."""
    model = copy_module(model).eval()  # eval: BN uses running stats, no side effects on the caller
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return forward_flops(model, torch.zeros((1, *input_shape), device=device, dtype=dtype))


def count_flops(model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Forward FLOPs for one sample; with masks, each pruned layer's count is scaled by its density."""
    total, per_module = layer_flops(model, tuple(input_shape))
    if not masks:
        return total
    users = parameter_users(model)
    removed = 0.0
    for name, m in masks.items():
        density = float(m.float().mean()) if m.numel() else 1.0
        removed += _weight_flops(name, per_module, users) * (1.0 - density)
    return int(round(total - removed))


@torch.no_grad()
def has_input_output_path(model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...]) -> bool:
    """True when some path of kept weights still links the input to the output."""
    # Norm layers become the identity: they would normalize the probe's constant features to 0
    # (layer and group norm), or need statistics a one-sample probe does not have (batch norm).
    probe = replaced_by_identity(scratch_copy(model), NORM_TYPES).to(torch.float64).eval()
    params = prunable_parameters(probe)
    for name, p in params.items():
        fan_in = max(1, p[0].numel())
        p.copy_(masks[name].to(p.device, torch.float64) / fan_in)
    keep_as_is = {id(p) for p in params.values()}
    for p in probe.parameters():
        if id(p) not in keep_as_is:
            p.zero_()  # biases: a bias alone would make the output nonzero without any path
    device = next(probe.parameters()).device
    out = probe(torch.ones((1, *input_shape), dtype=torch.float64, device=device))
    return bool(torch.isfinite(out).all() and out.abs().sum() > 0)


def mask_report(
    model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...] | None = None
) -> MaskReport:
    """Per-layer and overall density, kept params, dense vs sparse FLOPs, and layer collapse."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    params = prunable_parameters(model)
    per_module: dict[str, int] = {}
    flops_dense = flops_sparse = 0
    if input_shape is not None:
        flops_dense, per_module = layer_flops(model, tuple(input_shape))
    users = parameter_users(model)
    layers = []
    removed = 0.0
    for name, p in params.items():
        m = masks[name]
        kept = int(m.sum())
        density = kept / m.numel() if m.numel() else 1.0
        lf = _weight_flops(name, per_module, users)
        removed += lf * (1.0 - density)
        layers.append(LayerReport(name, tuple(p.shape), p.numel(), kept, density, lf))
    total = sum(layer.numel for layer in layers)
    kept_all = sum(layer.kept for layer in layers)
    if input_shape is not None:
        flops_sparse = int(round(flops_dense - removed))
    empty = [layer.name for layer in layers if layer.kept == 0]
    disconnected = input_shape is not None and not has_input_output_path(model, masks, tuple(input_shape))
    return MaskReport(
        layers=layers,
        params_total=total,
        params_kept=kept_all,
        density=kept_all / total if total else 1.0,
        flops_dense=int(flops_dense),
        flops_sparse=flops_sparse,
        collapsed_layers=empty,
        disconnected=disconnected,
        input_shape=tuple(input_shape) if input_shape is not None else None,
    )
