"""The synflow proxy (Tanaka et al. 2020, as a network score by Abdelfattah et al. 2021).

Data-free: on the linearized network (batch norm removed, every parameter and buffer replaced by
its absolute value), R = sum(f(1)) for one all-ones input, and the score is the sum over
Conv/Linear weights of |w * dR/dw|. Computed in float64 because the product of absolute weights
overflows float32 on deep nets (a deliberate deviation from the float32 of the original code).
"""

from __future__ import annotations

import torch

from paitune.models.norms import replaced_by_identity
from paitune.proxies.network import BATCHNORM_TYPES, MaskedNet


def synflow(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of |w * dR/dw| over prunable weights, R = sum(f(1)) on the linearized float64 net."""
    net = replaced_by_identity(masked.net, BATCHNORM_TYPES)
    # Eval mode: with batch norm gone this only switches dropout off, which would otherwise
    # zero random paths of the all-ones input.
    net.eval()
    net.double()
    with torch.no_grad():
        for tensor in list(net.parameters()) + list(net.buffers()):
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    # Read the weights only now: .double() may have replaced the parameter objects.
    weights = [layer.module.weight for layer in masked.layers]
    total = net(ones).sum()
    grads = torch.autograd.grad(total, weights, allow_unused=True)
    return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)
