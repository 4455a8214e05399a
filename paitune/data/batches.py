"""Minibatches from in-memory splits, deterministic given a torch.Generator or a seed."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch

from paitune.data.bundle import DataBundle, Split
from paitune.errors import PaituneError


def iterate_batches(
    split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches covering the split once; the last batch may be smaller.

    With ``shuffle`` the order is one ``torch.randperm`` drawn from ``generator`` (the global torch
    RNG when it is None), so a seeded generator gives the same epoch every time.
    """
    _check_positive("batch_size", batch_size)
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            yield split.x[start : start + batch_size], split.y[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield split.x[index], split.y[index]


def scoring_batches(
    bundle: DataBundle, n_batches: int, batch_size: int, *, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` batches of ``batch_size`` training samples for pruning scores and proxies.

    Samples are drawn without replacement from a permutation of the train split seeded by
    ``seed``; when more samples are asked for than the split holds, further permutations follow.
    The same bundle and seed always give the same batches.
    """
    _check_positive("n_batches", n_batches)
    _check_positive("batch_size", batch_size)
    train = bundle.train
    generator = torch.Generator().manual_seed(seed)
    needed = n_batches * batch_size
    permutations = [torch.randperm(len(train), generator=generator) for _ in range(-(-needed // len(train)))]
    order = torch.cat(permutations)[:needed]
    return [(train.x[index], train.y[index]) for index in order.split(batch_size)]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise PaituneError(f"{name} must be a positive integer, got {value!r}")
