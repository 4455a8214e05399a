"""Saliency scores at initialization (higher = keep), as REFERENCE.md and the papers' code define them.

Every function takes a *scratch copy* of the model (``ScoringCopy``) so the caller's model, its
weights, buffers, gradients and train/eval mode are never touched. The current mask enters the
forward pass as the effective weight ``w * m``: iterative methods score the masked network, and a
gradient with respect to the effective weight is exactly ``dL/dm / w`` (SNIP's mask gradient).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.scratch import scratch_copy
from .layers import prunable_parameters

GRASP_TEMPERATURE = 200.0  # Wang et al.'s code divides the logits by T = 200 for both passes


class ScoringCopy:
    """A deep copy of the model on which scores are computed; holds the original weights w0."""

    def __init__(self, model: nn.Module, *, dtype: torch.dtype | None = None):
        self.model = scratch_copy(model)
        if dtype is not None:
            self.model = self.model.to(dtype)
        for p in self.model.parameters():
            p.requires_grad_(True)
            p.grad = None
        self.params = prunable_parameters(self.model)
        self.original = {name: p.detach().clone() for name, p in self.params.items()}

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def set_effective_weights(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Weights := w0 * m, so the forward pass sees the current mask."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.original[name])
                if masks is not None:
                    p.masked_fill_(~masks[name].to(p.device), 0)

    def zero_grad(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    def gradients(self) -> dict[str, torch.Tensor]:
        return {
            name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for name, p in self.params.items()
        }


def _to_device(batches: Iterable, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.to(device), y.to(device)) for x, y in batches]


def random_scores(params: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """i.i.d. uniform scores per weight, drawn on the CPU so a seed means the same on every device."""
    return {name: torch.rand(p.shape, generator=generator, dtype=torch.float64) for name, p in params.items()}


def magnitude_scores(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: p.detach().abs().double().cpu() for name, p in params.items()}


def effective_weight_gradients(
    scratch: ScoringCopy, masks: dict[str, torch.Tensor] | None, batches: Sequence
) -> dict[str, torch.Tensor]:
    """dL/d(w * m) with L = cross-entropy summed over the batches, model in train mode (SNIP)."""
    scratch.set_effective_weights(masks)
    scratch.zero_grad()
    scratch.model.train()
    for x, y in _to_device(batches, scratch.device):
        F.cross_entropy(scratch.model(x), y).backward()
    return scratch.gradients()


def snip_scores(scratch: ScoringCopy, masks, batches) -> dict[str, torch.Tensor]:
    """|dL/dm| = |g * w0| at the current mask (Lee et al. 2019; FORCE's score over all weights)."""
    grads = effective_weight_gradients(scratch, masks, batches)
    return {name: (grads[name] * scratch.original[name]).abs().double().cpu() for name in grads}


def grasp_scores(scratch: ScoringCopy, masks, batches) -> dict[str, torch.Tensor]:
    """w * (H g) (Wang et al. 2020): keep the largest, i.e. remove the largest -w * Hg.

    g is the gradient of CE(f(x)/T), summed over the batches and treated as a constant; Hg comes from
    a second backward of (g . dL/dw) taken with create_graph=True, batch by batch, as in their code.
    """
    scratch.set_effective_weights(masks)
    scratch.model.train()
    names = list(scratch.params)
    weights = [scratch.params[n] for n in names]
    batches = _to_device(batches, scratch.device)
    g = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(scratch.model(x) / GRASP_TEMPERATURE, y)
        for acc, grad in zip(g, torch.autograd.grad(loss, weights, allow_unused=True)):
            if grad is not None:
                acc.add_(grad)
    scratch.zero_grad()
    for x, y in batches:
        loss = F.cross_entropy(scratch.model(x) / GRASP_TEMPERATURE, y)
        grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
        z = sum((gi * gr).sum() for gi, gr in zip(g, grads) if gr is not None)
        if isinstance(z, torch.Tensor) and z.requires_grad:
            z.backward()
    hg = scratch.gradients()
    return {name: (scratch.original[name] * hg[name]).double().cpu() for name in names}


class SynflowCopy(ScoringCopy):
    """The linearized network of Tanaka et al.: float64, eval mode, |parameters| and |float buffers|."""

    def __init__(self, model: nn.Module):
        # float64: the product of absolute weights overflows float32 on deep nets (REFERENCE.md).
        super().__init__(model, dtype=torch.float64)
        self.model.eval()
        with torch.no_grad():
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                if t.is_floating_point():
                    t.abs_()
        self.original = {name: w.abs() for name, w in self.original.items()}


def synflow_scores(scratch: SynflowCopy, masks, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """|w * dR/dw| with R = sum(f(1)) on the linearized, masked net; pruned weights score 0."""
    scratch.set_effective_weights(masks)
    scratch.zero_grad()
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=scratch.device)
    scratch.model(ones).sum().backward()
    # The parameter holds |w0| * m already, so pruned weights score exactly 0; a layer the forward
    # never reaches (an unused head) has no gradient and scores 0 too.
    grads = scratch.gradients()
    return {name: (grads[name] * p.detach()).abs().cpu() for name, p in scratch.params.items()}


def lamp_scores(
    scores: dict[str, torch.Tensor],
    *,
    candidates: dict[str, torch.Tensor] | None = None,
    stable: bool = True,
    empty_layer: float | None = None,
) -> dict[str, torch.Tensor]:
    """LAMP (Lee et al. 2021): s_u^2 / sum_{v >= u} s_v^2 within the layer, sorted ascending.

    With magnitude scores this is LAMP exactly; other methods' scores go through the same
    normalization (signed scores, e.g. GraSP's, are shifted to be non-negative first, keeping order).
    ``candidates`` ({layer: bool mask}, e.g. the weights an iterative round may keep) restricts
    each layer's sums and shift to those weights; the others score 0.

    The largest score of every layer gets 1, the global maximum, so no layer is ever emptied. Tied
    scores rank the lower flat index higher (it sorts later, so its sum is the smaller), as every
    selection breaks ties. A layer whose scores are all zero (0/0 throughout) follows the same
    order: its top weight, the lowest flat index, gets 1 and every other weight 0, the lowest score,
    as a zero score gets in any layer.

    ``stable=False, empty_layer=x`` is IMP's and edge-popup's LAMP: ``torch.sort``'s default order
    for ties, and an all-zero layer scoring x throughout; each method reproduces its masks only
    with its own order.
    """
    out = {}
    for name, s in scores.items():
        flat = s.detach().reshape(-1).double()
        idx = None
        if candidates is not None:
            idx = torch.nonzero(candidates[name].reshape(-1).to(flat.device), as_tuple=False).reshape(-1)
            flat = flat[idx]
        lamp = _lamp_layer(flat, stable, empty_layer)
        if idx is not None:
            lamp = torch.zeros(s.numel(), dtype=torch.float64, device=flat.device).index_put_((idx,), lamp)
        out[name] = lamp.reshape(s.shape)
    return out


def _lamp_layer(flat: torch.Tensor, stable: bool, empty_layer: float | None) -> torch.Tensor:
    """LAMP over one layer's flat float64 scores (see ``lamp_scores``)."""
    n = flat.numel()
    if n and flat.min() < 0:
        flat = flat - flat.min()
    if stable:
        # Ascending by score, ties by descending index: sorting the reversed layer stably puts the
        # lower index of a tie later. The squares come out in the order sorting them would give.
        ascending, reversed_order = torch.sort(torch.flip(flat, [0]), stable=True)
        ordered, order = ascending**2, (n - 1) - reversed_order
    else:
        ordered, order = torch.sort(flat**2, stable=False)
    # suffix sums: sum over v >= u in ascending order
    suffix = torch.flip(torch.cumsum(torch.flip(ordered, [0]), 0), [0])
    tiny = torch.finfo(torch.float64).tiny
    fill = 0.0 if empty_layer is None else empty_layer
    normalized = torch.where(suffix > 0, ordered / suffix.clamp_min(tiny), torch.full_like(suffix, fill))
    if empty_layer is None and n:
        normalized[-1] = 1.0  # s/s for the layer's top weight; 0/0 in an all-zero layer
    lamp = torch.empty_like(flat)
    lamp[order] = normalized
    return lamp
