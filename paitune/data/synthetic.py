"""A synthetic classification task of any input shape: deterministic and learnable.

Each class c has a mean pattern mu_c, and a sample of class c is ``mu_c + N(0, 1)`` noise. The
pattern is the sum of a per-channel offset (so models that average over space, such as ResNets
with global pooling, still see class evidence) and a per-element pattern (so a linear model over
the flattened input can reach high accuracy). The classes are balanced in every split. The task is
meant to exercise the pipeline cheaply and to make "better than chance" a meaningful test, not to
rank pruning methods.
"""

from __future__ import annotations

import torch

from paitune.data.bundle import DataBundle, Split
from paitune.errors import PaituneError

# Amplitudes relative to the unit noise. With the default sizes a logistic regression on the
# flattened input scores about 0.77 on (1, 8, 8) (chance 0.1) and 0.5 on (16,); the default
# (3, 32, 32) is easy (1.0): more input elements carry more evidence.
_OFFSET_SCALE = 0.4
_PATTERN_SCALE = 0.3


def load_synthetic_bundle(
    input_shape: tuple[int, ...], num_classes: int, sizes: tuple[int, int, int], seed: int
) -> DataBundle:
    """Draw the class patterns and the three splits (train, val, test sizes) from ``seed``."""
    _check(input_shape, num_classes, sizes)
    generator = torch.Generator().manual_seed(seed)
    channel_shape = (num_classes, input_shape[0]) + (1,) * (len(input_shape) - 1)
    offsets = torch.randn(channel_shape, generator=generator) * _OFFSET_SCALE
    patterns = torch.randn((num_classes, *input_shape), generator=generator) * _PATTERN_SCALE
    means = offsets + patterns

    def draw(n: int) -> Split:
        labels = torch.arange(n, dtype=torch.int64) % num_classes
        labels = labels[torch.randperm(n, generator=generator)]
        noise = torch.randn((n, *input_shape), generator=generator)
        return Split(means[labels] + noise, labels)

    train, val, test = (draw(n) for n in sizes)
    return DataBundle(
        name="synthetic",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        train=train,
        val=val,
        test=test,
    )


def _check(input_shape: tuple[int, ...], num_classes: int, sizes: tuple[int, ...]) -> None:
    if len(input_shape) == 0 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise PaituneError(f"synthetic_shape must be positive integers such as (3, 32, 32), got {tuple(input_shape)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise PaituneError(f"synthetic_classes must be an integer >= 2, got {num_classes!r}")
    if len(sizes) != 3 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise PaituneError(f"synthetic_size must be three positive integers (train, val, test), got {tuple(sizes)}")
