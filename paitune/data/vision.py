"""Real image datasets through torchvision, from a local data root, held whole in memory.

torchvision is an optional extra (``pip install 'paitune[vision]'``) and is imported only here,
only when one of these datasets is asked for. Nothing is downloaded unless ``download=True``.
The official test split is the test split; the validation split is carved from the official
training split, stratified and drawn from ``split_seed``, so it is the same in every trial.
Inputs are scaled to [0, 1] and standardized per channel with the usual published statistics.
No augmentation: every split is one float32 tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paitune.data.bundle import DataBundle, Split
from paitune.data.splits import stratified_split
from paitune.errors import PaituneError

# Where to look when no data root is given; resolved to an absolute path so the error names it.
DEFAULT_DATA_ROOT = Path("~/.cache/paitune/datasets")


@dataclass(frozen=True)
class VisionSpec:
    torchvision_class: str  # name in torchvision.datasets
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]  # per channel, of the [0, 1] training images
    std: tuple[float, ...]
    val_size: int  # carved from the official training split
    folder: str  # what torchvision expects under the data root
    files: tuple[str, ...]  # inside folder; all must exist unless downloading


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

VISION_DATASETS: dict[str, VisionSpec] = {
    "mnist": VisionSpec("MNIST", (1, 28, 28), 10, (0.1307,), (0.3081,), 5000, "MNIST/raw", _MNIST_FILES),
    "fashion_mnist": VisionSpec(
        "FashionMNIST", (1, 28, 28), 10, (0.2860,), (0.3530,), 5000, "FashionMNIST/raw", _MNIST_FILES
    ),
    "cifar10": VisionSpec(
        "CIFAR10",
        (3, 32, 32),
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        5000,
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
    ),
    "cifar100": VisionSpec(
        "CIFAR100",
        (3, 32, 32),
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        5000,
        "cifar-100-python",
        ("train", "test", "meta"),
    ),
}


def resolve_data_root(data_root: str | Path | None) -> Path:
    return Path(DEFAULT_DATA_ROOT if data_root is None else data_root).expanduser().resolve()


def load_vision_bundle(name: str, data_root: str | Path | None, download: bool, split_seed: int) -> DataBundle:
    """Load ``name`` (a key of VISION_DATASETS) whole into memory; errors are one-line PaituneErrors."""
    spec = VISION_DATASETS[name]
    root = resolve_data_root(data_root)
    if not download:
        _check_files(name, spec, root)
    datasets = import_torchvision_datasets()
    dataset_class = getattr(datasets, spec.torchvision_class)
    try:
        train_set = dataset_class(root=str(root), train=True, download=download)
        test_set = dataset_class(root=str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted", failed downloads
        raise PaituneError(f"could not load {name} from {root}: {_one_line(error)}") from error

    train_x, train_y = _to_tensors(train_set, spec)
    test_x, test_y = _to_tensors(test_set, spec)
    n_train = len(train_y) - spec.val_size
    train_idx, val_idx = stratified_split(train_y.numpy(), [n_train, spec.val_size], split_seed)
    train_index, val_index = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return DataBundle(
        name=name,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        train=Split(train_x[train_index], train_y[train_index]),
        val=Split(train_x[val_index], train_y[val_index]),
        test=Split(test_x, test_y),
    )


def _check_files(name: str, spec: VisionSpec, root: Path) -> None:
    folder = root / spec.folder
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if missing:
        raise PaituneError(
            f"{name} not found under {root} (missing {spec.folder}/{missing[0]}); pass --data-root DIR "
            f"holding {spec.folder}/ as torchvision lays it out (the Python loader also takes download=True)"
        )


def import_torchvision_datasets():
    try:
        from torchvision import datasets
    except ImportError as error:
        raise PaituneError(
            f"the image datasets need torchvision, which is not installed ({_one_line(error)}); "
            "pip install 'paitune[vision]' (with the torchvision build matching your torch)"
        ) from error
    return datasets


def _to_tensors(dataset, spec: VisionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's raw uint8 images and labels -> normalized (N, C, H, W) float32, int64.

    Reads ``.data`` / ``.targets`` directly instead of iterating through PIL images: the MNIST
    family stores a (N, H, W) uint8 tensor, CIFAR a (N, H, W, C) uint8 numpy array.
    """
    images = torch.as_tensor(np.asarray(dataset.data))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    else:
        images = images.permute(0, 3, 1, 2)
    if tuple(images.shape[1:]) != spec.input_shape:
        raise PaituneError(
            f"{spec.torchvision_class} images have shape {tuple(images.shape[1:])}, expected {spec.input_shape}; "
            "is the data root holding the right dataset?"
        )
    x = _standardize(images.float() / 255.0, spec)
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return x.contiguous(), y


def _standardize(images: torch.Tensor, spec: VisionSpec) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1] standardized per channel with the dataset's statistics."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (images - mean) / std


def black_pixel(name: str) -> tuple[float, ...] | None:
    """A black pixel of dataset ``name`` as its stored (standardized) inputs hold it, per channel:
    what the papers' zero padding of the raw image becomes (None: not a standardized image dataset)."""
    spec = VISION_DATASETS.get(name)
    if spec is None:
        return None
    return tuple(_standardize(torch.zeros(1, len(spec.mean), 1, 1), spec).flatten().tolist())


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
