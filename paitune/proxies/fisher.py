"""The fisher proxy (Theis et al. 2018, as computed by Abdelfattah et al. 2021).

For each Conv/Linear layer, with a = the layer's output (its activation before any norm or
nonlinearity) and dL/da its gradient, channel k of the layer scores

    F_k = 0.5 * mean over the batch of (sum over positions of a * dL/da)^2.

Abdelfattah et al.'s code broadcasts F_k to every weight of output channel k before summing the
per-weight scores, so the network's scalar weights each channel by its number of weights:
fisher = sum over layers and channels of F_k * (weights in channel k). We do the same, counting
only the unpruned weights of the channel on a pruned net, so the numbers are comparable with the
published ones.
"""

from __future__ import annotations

import torch
from torch import nn

from paitune.proxies.network import MaskedNet, cross_entropy, train_mode


def channel_fisher(act: torch.Tensor, grad: torch.Tensor, *, channels_last: bool) -> torch.Tensor:
    """F_k per output channel for one call of a layer; act and grad are (batch, ...)."""
    product = act * grad
    if channels_last:  # Linear: (batch, ..., out_features)
        per_sample = product.reshape(product.shape[0], -1, product.shape[-1]).sum(dim=1)
    else:  # Conv: (batch, out_channels, *positions)
        per_sample = product.reshape(product.shape[0], product.shape[1], -1).sum(dim=2)
    return 0.5 * per_sample.pow(2).mean(dim=0)


def fisher(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over layers and output channels of F_k * (unpruned weights of channel k)."""
    net = masked.net
    per_layer: list[torch.Tensor | None] = [None] * len(masked.layers)

    def capture(index: int, channels_last: bool):
        def on_forward(module, inputs, output):
            if not (isinstance(output, torch.Tensor) and output.requires_grad):
                return
            # A copy: an in-place op downstream (ReLU(inplace=True)) must not change the
            # activation we score. The tensor hook, registered before any such op, receives
            # the gradient w.r.t. this very value.
            act = output.detach().clone()

            def on_gradient(grad):
                contribution = channel_fisher(act, grad.detach(), channels_last=channels_last)
                previous = per_layer[index]
                per_layer[index] = contribution if previous is None else previous + contribution

            output.register_hook(on_gradient)

        return on_forward

    handles = [
        layer.module.register_forward_hook(capture(i, isinstance(layer.module, nn.Linear)))
        for i, layer in enumerate(masked.layers)
    ]
    try:
        with train_mode(net):
            loss = cross_entropy(net, x, y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return sum(
        float((scores * layer.kept_per_output_channel()).sum())
        for layer, scores in zip(masked.layers, per_layer)
        if scores is not None
    )
