"""``forward_flops``: a network's forward FLOPs for one input, in total and per module.

The counting is ``torch.utils.flop_counter.FlopCounterMode``'s: a multiply-add counts as 2, and a
module's count includes its submodules'. The mask report (dense and pruned FLOPs) and the ``flops``
proxy both read it from here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per module path) of ``model(example)`` under ``torch.no_grad``.

    Module paths are ``model.named_modules()`` names, ``""`` for the model itself. The model runs
    as it is (set eval mode first where batch statistics would matter)."""
    root = type(model).__name__  # the counter names modules "<root class>.<path>"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root:
            per_module[""] = int(sum(ops.values()))
        elif key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module
