"""The loss-gradient proxies: grad_norm, snip and grasp (Abdelfattah et al. 2021).

All three differentiate the mean cross-entropy of one batch, model in train mode, w.r.t. the
Conv/Linear weights and sum a per-weight score over layers and elements. On a pruned net the
pruned weights are not parameters of the network: their gradient is masked out, so they add
nothing to any score (and nothing to GraSP's Hessian-gradient product).
"""

from __future__ import annotations

import torch

from paitune.proxies.network import MaskedNet, cross_entropy, train_mode


def _weight_gradients(masked: MaskedNet, loss: torch.Tensor, *, create_graph=False) -> list:
    """dL/dW for every prunable layer (None where W does not reach the loss)."""
    weights = [layer.module.weight for layer in masked.layers]
    return list(torch.autograd.grad(loss, weights, allow_unused=True, create_graph=create_graph))


def loss_gradients(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> list:
    """dL/dW of the batch's loss for every prunable layer, the net in train mode.

    grad_norm and snip are both functions of these gradients (and the weights): computed once on
    a fresh working copy, they give both proxies exactly the values each would get on its own.
    """
    with train_mode(masked.net):
        return _weight_gradients(masked, cross_entropy(masked.net, x, y))


def grad_norm_from(masked: MaskedNet, grads: list) -> float:
    """grad_norm from ``loss_gradients(masked, x, y)``."""
    return sum(float(layer.masked(g).norm()) for layer, g in zip(masked.layers, grads) if g is not None)


def snip_from(masked: MaskedNet, grads: list) -> float:
    """snip from ``loss_gradients(masked, x, y)``."""
    return sum(
        float((layer.masked(g) * layer.module.weight.detach()).abs().sum())
        for layer, g in zip(masked.layers, grads)
        if g is not None
    )


def grad_norm(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over layers of the L2 norm of the layer's weight gradient."""
    return grad_norm_from(masked, loss_gradients(masked, x, y))


def snip(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of |g * w|: the saliency of each weight's connection (Lee et al. 2019)."""
    return snip_from(masked, loss_gradients(masked, x, y))


def grasp(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of -w * (H g) with temperature 1 (Wang et al. 2020, as in Abdelfattah et al.).

    H g is the gradient of z = g_stopped . g(w); one forward pass serves both g and the
    Hessian-vector product, so g and H see the very same batch-norm statistics.
    """
    with train_mode(masked.net):
        loss = cross_entropy(masked.net, x, y)
    grads = _weight_gradients(masked, loss, create_graph=True)
    terms = [
        (layer.masked(g).detach() * g).sum()
        for layer, g in zip(masked.layers, grads)
        if g is not None and g.requires_grad
    ]
    if not terms:
        return 0.0  # the gradient does not depend on the weights: H g = 0
    hessian_grads = _weight_gradients(masked, torch.stack(terms).sum())
    return sum(
        float((-layer.module.weight.detach() * hg).sum())
        for layer, hg in zip(masked.layers, hessian_grads)
        if hg is not None
    )
