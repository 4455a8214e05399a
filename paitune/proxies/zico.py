"""The zico proxy (Li et al. 2023): gradient signal-to-noise across two halves of the batch.

The batch is split in two (``torch.chunk``), each half a batch of its own in train mode; per half,
g = the gradient of the mean cross-entropy w.r.t. each Conv/Linear weight (pruned entries 0). Per
weight mu = mean over the halves of |g| and sigma = their standard deviation (ddof 0); per layer
S = sum over the weights with sigma > 0 of mu / sigma, and zico = sum over layers with S > 0 of
log S. Fewer than two samples, or two identical halves, score 0.

"A batch of its own": each half starts from the same buffers (the running statistics the first
half's forward moved are put back before the second), and batch norm runs as ``train_mode``
says, so a half of one sample is normalized over its positions and only a layer that would see
one value per channel (a BatchNorm1d) uses the running statistics, the model's own.
"""

from __future__ import annotations

import math

import torch

from paitune.proxies.network import MaskedNet, cross_entropy, train_mode


def zico(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(x) < 2:
        return 0.0
    weights = [layer.module.weight for layer in masked.layers]
    buffers = [(buffer, buffer.detach().clone()) for buffer in masked.net.buffers()]
    per_half = []
    for xh, yh in zip(x.chunk(2), y.chunk(2)):
        with torch.no_grad():
            for buffer, initial in buffers:
                buffer.copy_(initial)
        with train_mode(masked.net):
            loss = cross_entropy(masked.net, xh, yh)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        per_half.append(
            [
                torch.zeros_like(w, dtype=torch.float64) if g is None else layer.masked(g).detach().double()
                for layer, w, g in zip(masked.layers, weights, grads)
            ]
        )
    total = 0.0
    for halves in zip(*per_half):
        stacked = torch.stack(halves)
        sigma = stacked.std(dim=0, correction=0)
        mu = stacked.abs().mean(dim=0)
        noisy = sigma > 0
        s = float((mu[noisy] / sigma[noisy]).sum())
        if s != 0:
            total += math.log(s)
    return total
