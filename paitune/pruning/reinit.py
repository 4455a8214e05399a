"""Re-drawing a module's parameters from its own initializer, from a given seed.

The initializer is the model's own ``reset_parameters()`` when it defines one (paitune's models
do); otherwise each layer's ``reset_parameters``, PyTorch's default for that layer type, which
differs from an initialization the model does in its ``__init__`` (Kaiming fan-out convs, zeroed
norm weights, ...): ``initializer`` names which one applies.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.registry import seed_cpu_generator

MODEL_INITIALIZER = "model.reset_parameters"
LAYER_INITIALIZERS = "each layer's reset_parameters"


def initializer(module: nn.Module) -> str:
    """Which initializer ``redraw_in_place`` uses for ``module``: MODEL_INITIALIZER or LAYER_INITIALIZERS."""
    return MODEL_INITIALIZER if callable(getattr(module, "reset_parameters", None)) else LAYER_INITIALIZERS


def redraw_in_place(module: nn.Module, seed: int) -> None:
    """Every parameter of ``module`` (a CPU copy) re-drawn by ``initializer(module)``.

    On the CPU, so that a seed means the same weights on every device and no CUDA RNG state is
    consumed; the caller's RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        seed_cpu_generator(seed)
        if initializer(module) == MODEL_INITIALIZER:
            module.reset_parameters()
        else:
            for sub in module.modules():
                if sub is not module and callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
