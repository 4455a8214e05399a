"""The zen proxy (Lin et al. 2021): expressivity of the pre-classifier features, data- and weight-free.

Conv/Linear weights are drawn N(0, 1) (times the mask) with zero biases, every normalization layer
gets weight 1 and bias 0, batch norm fresh running statistics (momentum 0.1); x1, x2 ~ N(0, 1) of
the batch's shape. In train mode without gradient, f = the classifier's input, flattened, for x1
and for x1 + 0.01 x2;
Delta = mean over samples of sum |f(x1) - f(x1 + 0.01 x2)| (L1, as their code), and
zen = log Delta + sum over batch-norm layers of log sqrt(mean running_var) after the two passes.
A batch norm without running statistics (``track_running_stats=False``) adds no term (the
official code, which reads ``running_var``, fails on one). Batch norm runs as in ``train_mode``:
one sample is normalized over its positions, and a layer that sees one value per channel uses
its (reset) running statistics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from paitune.models.norms import NORM_TYPES
from paitune.proxies.network import MaskedNet, train_mode

PERTURBATION = 0.01


def zen(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net = masked.net
    with torch.no_grad():
        for layer in masked.layers:
            weight = layer.module.weight
            weight.copy_(layer.masked(torch.randn_like(weight)))
            if getattr(layer.module, "bias", None) is not None:
                layer.module.bias.zero_()
        # Every normalization layer's affine part is the identity (the official code resets batch
        # and group norm; layer and instance norm too, so zen stays free of every weight).
        for norm in net.modules():
            if isinstance(norm, NORM_TYPES):
                if getattr(norm, "weight", None) is not None:
                    norm.weight.fill_(1.0)
                if getattr(norm, "bias", None) is not None:
                    norm.bias.zero_()
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = 0.1
        x1 = torch.randn_like(x)
        x2 = torch.randn_like(x)
    features: list[torch.Tensor] = []
    hook = masked.layers[-1].module.register_forward_pre_hook(
        lambda module, inputs: features.append(inputs[0].detach().flatten(1))
    )
    try:
        with torch.no_grad(), train_mode(net):
            net(x1)
            net(x1 + PERTURBATION * x2)
    finally:
        hook.remove()
    delta = float((features[0] - features[1]).abs().sum(dim=1).mean())
    # A batch norm that keeps no running statistics (track_running_stats=False) adds nothing: it has
    # no running variance to read (the official code fails on it). Its layer still normalizes f.
    log_bn = sum(math.log(math.sqrt(float(norm.running_var.mean()))) for norm in norms if norm.running_var is not None)
    return (math.log(delta) if delta > 0 else float("-inf")) + log_bn
