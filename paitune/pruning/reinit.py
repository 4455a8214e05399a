"""Re-drawing a module's parameters from its own initializer, from a given seed."""

from __future__ import annotations

import torch
from torch import nn

from ..models.registry import seed_cpu_generator


def redraw_in_place(module: nn.Module, seed: int) -> None:
    """Every parameter of ``module`` (a CPU copy) re-drawn by the model's own ``reset_parameters``.

    On the CPU, so that a seed means the same weights on every device and no CUDA RNG state is
    consumed; the caller's RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        seed_cpu_generator(seed)
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()  # the model's own init (paitune's models define one)
        else:
            for sub in module.modules():
                if sub is not module and callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
