"""``scratch_copy``: the private copy of a model that a score, a proxy or the collapse probe runs.

Every one of them reads the model's output as one Tensor of logits (its loss, its sum, its
Jacobian). A forward that returns a tuple, a dict or anything else would fail deep inside a method
with a TypeError; the copy's forward hook refuses it at the first forward with one line instead.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PaituneError
from .copying import copy_module


def scratch_copy(model: nn.Module, memo: dict[int, object] | None = None) -> nn.Module:
    """``copy_module(model, memo)`` whose forward must return one Tensor (a PaituneError otherwise)."""
    net = copy_module(model, memo)
    net.register_forward_hook(_require_logits)
    return net


def _require_logits(module: nn.Module, inputs: tuple, output: object) -> None:
    if not isinstance(output, torch.Tensor):
        raise PaituneError(f"the model's forward must return one Tensor of logits; it returned {type(output).__name__}")
