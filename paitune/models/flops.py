"""``forward_flops``: a network's forward FLOPs for one sample, in total and per module.

The counting is ``torch.utils.flop_counter.FlopCounterMode``'s: a multiply-add counts as 2, and a
module's count includes its submodules'. The mask report (dense and pruned FLOPs) and the ``flops``
proxy both read it from here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PAIR = 2  # samples in the counted batch


def forward_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per module path) of ``model`` on one sample, ``example[:1]``.

    Module paths are ``model.named_modules()`` names, ``""`` for the model itself. The model runs
    as it is (set eval mode first where batch statistics would matter), under ``torch.no_grad``.
    """
    # The sample runs twice in one batch and the counts are halved: every op the counter counts
    # (matmuls, convolutions, attention) is linear in the batch, and a batch norm that keeps no
    # running statistics, which normalizes by the batch even in eval mode, needs two values per
    # channel.
    pair = example[:1].expand(PAIR, *example.shape[1:])
    root = type(model).__name__  # the counter names modules "<root class>.<path>"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pair)
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root:
            per_module[""] = sum(ops.values()) // PAIR
        elif key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = sum(ops.values()) // PAIR
    return counter.get_total_flops() // PAIR, per_module
