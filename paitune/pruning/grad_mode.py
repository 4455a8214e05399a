"""Autograd on for scoring, whatever the caller's grad mode.

The gradient methods and proxies differentiate by definition: a caller's ``torch.no_grad()`` or
``torch.inference_mode()`` (common around evaluation code) must not switch that off. Tensors made
under inference mode cannot be saved for backward, so such inputs are copied into normal tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def gradients_on() -> Iterator[None]:
    """Inference mode off and gradients on inside, the caller's modes restored after."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def autograd_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a normal copy of it when it was made under ``torch.inference_mode`` (call
    inside ``gradients_on``: a copy made in inference mode would be an inference tensor again)."""
    return tensor.clone() if tensor.is_inference() else tensor
