"""Datasets as whole in-memory tensors: embedded digits, synthetic, and torchvision image sets.

bundle = load_dataset("digits")                      # (1, 8, 8), 10 classes, no download
for x, y in iterate_batches(bundle.train, 128, shuffle=True, generator=g): ...
batches = scoring_batches(bundle, n_batches=1, batch_size=256, seed=0)   # for pruning scores
"""

from paitune.data.batches import iterate_batches, scoring_batches
from paitune.data.bundle import DataBundle, Split
from paitune.data.registry import (
    DATASETS,
    DatasetSpec,
    clear_cache,
    dataset_names,
    dataset_spec,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetSpec",
    "Split",
    "clear_cache",
    "dataset_names",
    "dataset_spec",
    "iterate_batches",
    "load_dataset",
    "register_dataset",
    "scoring_batches",
]
