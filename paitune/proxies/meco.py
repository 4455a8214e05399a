"""The meco proxy (Jiang et al. 2023): the smallest eigenvalue of each feature map's channel correlations.

One sample (their batch size 1), train mode: batch norm normalizes over the sample's positions, and
where it would see one value per channel (a BatchNorm1d on (1, C), a 1x1 map) it uses its running
statistics. For every call
of every module of ``model.modules()`` (the root and containers too) with a tensor output, F = the
sample's output reshaped (channels, -1), C = corrcoef(F) with NaN and inf set to 0, and the term is
the smallest eigenvalue of C; meco = the sum of the finite terms. Feature vectors (an MLP) give
all-zero correlation matrices, so an MLP scores 0.
"""

from __future__ import annotations

import math
import warnings

import torch

from paitune.proxies.network import MaskedNet, train_mode


def smallest_correlation_eigenvalue(sample: torch.Tensor) -> float:
    if sample.dim() == 0:
        return float("nan")
    features = sample.detach().to(torch.float64).reshape(sample.shape[0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one position per channel: corrcoef is NaN, set to 0 below
        corr = torch.atleast_2d(torch.corrcoef(features))
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return float(torch.linalg.eigvalsh(corr)[0])


def meco(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net = masked.net
    terms: list[float] = []

    def on_output(module, inputs, output):
        if isinstance(output, torch.Tensor):
            terms.append(smallest_correlation_eigenvalue(output[0]))

    handles = [module.register_forward_hook(on_output) for module in net.modules()]
    try:
        # One value per channel (BatchNorm1d on (1, C), or a 1x1 map) has no batch statistics:
        # train_mode gives that call the running statistics.
        with torch.no_grad(), train_mode(net):
            net(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return float(sum(t for t in terms if math.isfinite(t)))
