"""Deterministic stratified splitting: each split keeps the class proportions of the whole."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Split the indices of ``labels`` into ``len(sizes)`` disjoint sets of exactly ``sizes`` elements.

    The sizes must add up to ``len(labels)``. Every split takes from each class in proportion to
    the class's share of the whole (largest-remainder rounding, so the totals are exact); which
    samples go where is drawn from ``seed`` alone. Each returned index array is sorted.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if sum(sizes) != total or any(s < 0 for s in sizes):
        raise ValueError(f"split sizes {list(sizes)} must be non-negative and add up to {total}")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _class_quotas(counts, sizes)

    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c, cls in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.cumsum(quotas[:, c])[:-1]
        for part, chunk in zip(parts, np.split(members, bounds)):
            part.append(chunk)
    return [np.sort(np.concatenate(part)) for part in parts]


def _class_quotas(counts: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """How many samples of each class go to each split: a (splits x classes) integer matrix.

    Each split but the last gets floor(size * class share) per class, and the few samples still
    missing go to the classes with the largest fractional parts (ties: lower class index), as long
    as the class has samples left. The last split takes whatever remains of every class.
    """
    total = int(counts.sum())
    quotas = np.zeros((len(sizes), len(counts)), dtype=np.int64)
    left = counts.astype(np.int64).copy()
    for s, size in enumerate(sizes[:-1]):
        exact = counts * (size / total)
        base = np.minimum(np.floor(exact).astype(np.int64), left)
        short = size - int(base.sum())
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        for c in order:
            if short == 0:
                break
            if left[c] > base[c]:
                base[c] += 1
                short -= 1
        # Only reachable with tiny classes already used up by earlier splits: take from any class.
        for c in range(len(counts)):
            if short == 0:
                break
            extra = min(short, int(left[c] - base[c]))
            base[c] += extra
            short -= extra
        quotas[s] = base
        left -= base
    quotas[-1] = left
    return quotas
