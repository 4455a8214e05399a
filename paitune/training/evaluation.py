"""Loss and accuracy of a model over a whole split held on the device."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .modes import autocast


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (``forward``: the model's, by default)."""
    model.eval()
    forward = forward or model
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        with autocast(x.device, precision):
            logits = forward(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    n = max(1, x.shape[0])
    return float(loss_sum) / n, float(correct) / n
