"""``load_dataset``: one entry point for every dataset, cached per process; ``register_dataset`` adds one."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from paitune.data.bundle import DataBundle
from paitune.data.digits import load_digits_bundle
from paitune.data.synthetic import load_synthetic_bundle
from paitune.data.vision import VISION_DATASETS, load_vision_bundle, resolve_data_root
from paitune.errors import PaituneError
from paitune.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset by name: how to load it, and its shape and classes without loading it.

    ``load(split_seed, data_root, download)`` returns the whole dataset as a ``DataBundle``; the
    split seed fixes which samples land in which split. ``input_shape`` / ``num_classes`` are
    ``None`` only for ``synthetic``, whose shape each trial sets.
    """

    name: str
    load: Callable[[int, str | None, bool], DataBundle]
    input_shape: tuple[int, ...] | None
    num_classes: int | None


_DATASETS: Registry[DatasetSpec] = Registry("dataset")
SYNTHETIC = "synthetic"


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec.name`` a value of the trial option ``dataset`` (spaces, sweeps and the CLI)."""
    return _DATASETS.add(spec.name, spec)


def dataset_names() -> tuple[str, ...]:
    return _DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    return _DATASETS.get(name)


register_dataset(DatasetSpec("digits", lambda seed, _root, _download: load_digits_bundle(seed), (1, 8, 8), 10))
register_dataset(DatasetSpec(SYNTHETIC, None, None, None))  # loaded with its trial's shape, below
for _name, _vision in VISION_DATASETS.items():
    register_dataset(
        DatasetSpec(
            _name,
            functools.partial(lambda name, seed, root, download: load_vision_bundle(name, root, download, seed), _name),
            tuple(_vision.input_shape),
            _vision.num_classes,
        )
    )
DATASETS: tuple[str, ...] = dataset_names()  # the built-in datasets

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
    spec = dataset_spec(name)
    seed = _as_int("split_seed", split_seed)
    if name == SYNTHETIC:
        shape = _as_int_tuple("synthetic_shape", synthetic_shape)
        sizes = _as_int_tuple("synthetic_size", synthetic_size)
        return _cached_synthetic(shape, _as_int("synthetic_classes", synthetic_classes), sizes, seed)
    # Key the cache by the resolved root so "data" and "./data" share one entry.
    root = str(resolve_data_root(data_root)) if spec.name in VISION_DATASETS else None
    return _cached(name, root, bool(download), seed)


def clear_cache() -> None:
    """Forget every cached dataset (frees memory; mainly for tests)."""
    for cached in (_cached, _cached_synthetic):
        cached.cache_clear()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached(name: str, data_root: str | None, download: bool, split_seed: int) -> DataBundle:
    return _DATASETS.get(name).load(split_seed, data_root, download)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_synthetic(shape: tuple[int, ...], classes: int, sizes: tuple[int, ...], split_seed: int) -> DataBundle:
    return load_synthetic_bundle(shape, classes, sizes, split_seed)


def _as_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PaituneError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _as_int_tuple(what: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise PaituneError(f"{what} must be a sequence of integers, got {values!r}")
    return tuple(_as_int(what, v) for v in values)
