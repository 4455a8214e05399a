"""``load_dataset``: one entry point for every dataset, cached per process."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from pathlib import Path

from paitune.data.bundle import DataBundle
from paitune.data.digits import load_digits_bundle
from paitune.data.synthetic import load_synthetic_bundle
from paitune.data.vision import VISION_DATASETS, load_vision_bundle, resolve_data_root
from paitune.errors import PaituneError, unknown_choice

DATASETS: tuple[str, ...] = ("digits", "synthetic", *VISION_DATASETS)

# Trials that run one after another in the same worker process re-use the loaded tensors. A few
# entries only: one CIFAR bundle is about 0.7 GB of float32.
_CACHE_SIZE = 4


def load_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    download: bool = False,
    synthetic_shape: Sequence[int] = (3, 32, 32),
    synthetic_classes: int = 10,
    synthetic_size: Sequence[int] = (512, 128, 128),
    split_seed: int = 0,
) -> DataBundle:
    """Load a dataset by name (one of DATASETS) as a DataBundle of whole in-memory splits.

    ``split_seed`` fixes which samples land in which split (and, for ``synthetic``, the data
    itself); it is independent of the trial seed so that every trial sees the same splits. The
    ``synthetic_*`` arguments are used only by ``synthetic``; ``data_root`` and ``download`` only
    by the torchvision datasets (default root: ~/.cache/paitune/datasets). The result is cached per
    process and shared: do not modify its tensors in place.
    """
    if name not in DATASETS:
        raise unknown_choice("dataset", name, DATASETS)
    seed = _as_int("split_seed", split_seed)
    if name == "digits":
        return _cached_digits(seed)
    if name == "synthetic":
        shape = _as_int_tuple("synthetic_shape", synthetic_shape)
        sizes = _as_int_tuple("synthetic_size", synthetic_size)
        return _cached_synthetic(shape, _as_int("synthetic_classes", synthetic_classes), sizes, seed)
    # Key the cache by the resolved root so "data" and "./data" share one entry.
    return _cached_vision(name, str(resolve_data_root(data_root)), bool(download), seed)


def clear_cache() -> None:
    """Forget every cached dataset (frees memory; mainly for tests)."""
    for cached in (_cached_digits, _cached_synthetic, _cached_vision):
        cached.cache_clear()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_digits(split_seed: int) -> DataBundle:
    return load_digits_bundle(split_seed)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_synthetic(shape: tuple[int, ...], classes: int, sizes: tuple[int, ...], split_seed: int) -> DataBundle:
    return load_synthetic_bundle(shape, classes, sizes, split_seed)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_vision(name: str, data_root: str, download: bool, split_seed: int) -> DataBundle:
    return load_vision_bundle(name, data_root, download, split_seed)


def _as_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PaituneError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _as_int_tuple(what: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise PaituneError(f"{what} must be a sequence of integers, got {values!r}")
    return tuple(_as_int(what, v) for v in values)
