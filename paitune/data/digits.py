"""scikit-learn's 8x8 handwritten digits: small, embedded (no download), the default for tests."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from paitune.data.bundle import DataBundle, Split
from paitune.data.splits import stratified_split

# Pixel values in load_digits are counts 0..16 (each pixel sums a 4x4 block of a 32x32 bitmap).
_PIXEL_MAX = 16.0
_VAL_FRACTION = 0.2
_TEST_FRACTION = 0.2


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float64, labels (1797,) int) exactly as ``sklearn.datasets.load_digits``.

    Read straight from the CSV that scikit-learn ships, without importing scikit-learn: its import
    (~1 s) would otherwise be paid by every fresh Ray worker before its first trial. Falls back to
    ``load_digits`` if the file is not where scikit-learn keeps it.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as handle:
                data = np.loadtxt(handle, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images, raw.target


def load_digits_bundle(split_seed: int) -> DataBundle:
    """The 1797 digits as (N, 1, 8, 8) float32, split 60/20/20, stratified by class.

    Pixels are scaled to [0, 1], then standardized with one mean and one std computed on the train
    split only (per channel, as for image datasets; a per-pixel std would be zero on the always-
    blank border pixels).
    """
    raw_images, raw_labels = digits_arrays()
    images = (raw_images.astype(np.float32) / _PIXEL_MAX)[:, None, :, :]
    labels = raw_labels.astype(np.int64)

    total = len(labels)
    n_val = round(total * _VAL_FRACTION)
    n_test = round(total * _TEST_FRACTION)
    val_idx, test_idx, train_idx = stratified_split(labels, [n_val, n_test, total - n_val - n_test], split_seed)

    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std())
    normalized = torch.from_numpy((images - mean) / std)
    targets = torch.from_numpy(labels)

    def take(idx: np.ndarray) -> Split:
        index = torch.from_numpy(idx)
        return Split(normalized[index].contiguous(), targets[index].contiguous())

    return DataBundle(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        train=take(train_idx),
        val=take(val_idx),
        test=take(test_idx),
    )
