"""paitune.data: digits, synthetic, torchvision loaders (with a stand-in torchvision), batching."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from paitune.data import DATASETS, DataBundle, clear_cache, iterate_batches, load_dataset, scoring_batches
from paitune.data.splits import stratified_split
from paitune.data.vision import VISION_DATASETS
from paitune.errors import PaituneError


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


def nearest_centroid_accuracy(bundle: DataBundle) -> float:
    """Fit class means on train, classify test by the closest mean: a tiny learner with no tuning."""
    x_train = bundle.train.x.flatten(1)
    centroids = torch.stack([x_train[bundle.train.y == c].mean(0) for c in range(bundle.num_classes)])
    predicted = torch.cdist(bundle.test.x.flatten(1), centroids).argmin(1)
    return (predicted == bundle.test.y).float().mean().item()


# --- stratified_split ---------------------------------------------------------------------------


def test_stratified_split_hand_checked_case():
    labels = np.array([0] * 6 + [1] * 4)
    first, second = stratified_split(labels, [5, 5], seed=0)
    assert sorted(labels[first].tolist()) == [0, 0, 0, 1, 1]
    assert sorted(labels[second].tolist()) == [0, 0, 0, 1, 1]
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(10))


def test_stratified_split_exact_sizes_with_unbalanced_classes():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    parts = stratified_split(labels, [4, 4, 7], seed=1)
    assert [len(p) for p in parts] == [4, 4, 7]
    assert sorted(np.concatenate(parts).tolist()) == list(range(15))
    for part in parts[:2]:  # proportional: 7/15*4 = 1.87, 5/15*4 = 1.33, 3/15*4 = 0.8
        counts = np.bincount(labels[part], minlength=3)
        assert np.all(np.abs(counts - np.array([7, 5, 3]) * 4 / 15) < 1)


def test_stratified_split_depends_only_on_seed():
    labels = np.arange(100) % 4
    first, again = stratified_split(labels, [30, 70], 5), stratified_split(labels, [30, 70], 5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(stratified_split(labels, [30, 70], 5)[0], stratified_split(labels, [30, 70], 6)[0])


def test_stratified_split_rejects_sizes_that_do_not_add_up():
    with pytest.raises(ValueError, match="add up to 10"):
        stratified_split(np.zeros(10), [3, 3], seed=0)


# --- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_sizes_and_standardization():
    bundle = load_dataset("digits")
    assert bundle.name == "digits" and bundle.input_shape == (1, 8, 8) and bundle.num_classes == 10
    sizes = [len(bundle.train), len(bundle.val), len(bundle.test)]
    assert sum(sizes) == 1797
    assert sizes == [1079, 359, 359]  # 60 / 20 / 20
    assert bundle.train.x.shape == (1079, 1, 8, 8) and bundle.train.x.dtype == torch.float32
    assert bundle.train.y.dtype == torch.int64
    # Standardized with the train split's own statistics.
    assert abs(bundle.train.x.mean().item()) < 1e-4
    assert abs(bundle.train.x.std().item() - 1) < 1e-3
    # The smallest pixel (a blank pixel, 0/16) maps to -mean/std, the same in every split.
    assert bundle.val.x.min().item() == pytest.approx(bundle.train.x.min().item())


def test_digits_split_is_stratified():
    bundle = load_dataset("digits")
    whole = torch.bincount(torch.cat([bundle.train.y, bundle.val.y, bundle.test.y]), minlength=10).double()
    for split, fraction in ((bundle.train, 0.6), (bundle.val, 0.2), (bundle.test, 0.2)):
        counts = torch.bincount(split.y, minlength=10).double()
        assert torch.all((counts - whole * fraction).abs() <= 1.5), (counts, whole * fraction)


def test_digits_deterministic_across_calls_and_seed_dependent():
    first = load_dataset("digits")
    assert load_dataset("digits") is first  # cached within the process
    clear_cache()
    again = load_dataset("digits")
    assert again is not first
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = load_dataset("digits", split_seed=1)
    assert not torch.equal(other.test.y, first.test.y)
    assert len(other.test) == len(first.test)


def test_digits_labels_match_images():
    # A nearest-centroid classifier is ~90% on digits; scrambled labels would give ~10%.
    assert nearest_centroid_accuracy(load_dataset("digits")) > 0.85


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_shapes_balance_and_determinism():
    bundle = load_dataset("synthetic", synthetic_shape=(2, 5, 5), synthetic_classes=4, synthetic_size=(40, 12, 8))
    assert bundle.input_shape == (2, 5, 5) and bundle.num_classes == 4
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [40, 12, 8]
    assert bundle.train.x.shape == (40, 2, 5, 5) and bundle.train.x.dtype == torch.float32
    assert torch.bincount(bundle.train.y).tolist() == [10, 10, 10, 10]
    assert torch.bincount(bundle.val.y).tolist() == [3, 3, 3, 3]
    clear_cache()
    again = load_dataset("synthetic", synthetic_shape=[2, 5, 5], synthetic_classes=4, synthetic_size=[40, 12, 8])
    assert torch.equal(again.train.x, bundle.train.x) and torch.equal(again.test.y, bundle.test.y)
    other = load_dataset(
        "synthetic", synthetic_shape=(2, 5, 5), synthetic_classes=4, synthetic_size=(40, 12, 8), split_seed=1
    )
    assert not torch.equal(other.train.x, bundle.train.x)


def test_synthetic_default_shape_and_flat_inputs():
    bundle = load_dataset("synthetic")
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == 10
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [512, 128, 128]
    flat = load_dataset("synthetic", synthetic_shape=(16,), synthetic_size=(50, 10, 10))
    assert flat.train.x.shape == (50, 16)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_synthetic_is_learnable(shape):
    bundle = load_dataset("synthetic", synthetic_shape=shape)
    assert nearest_centroid_accuracy(bundle) > 0.5  # chance is 0.1


def test_synthetic_learnable_by_a_few_steps_of_logistic_regression():
    torch.manual_seed(0)
    bundle = load_dataset("synthetic", synthetic_shape=(1, 8, 8))
    model = torch.nn.Linear(64, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(50):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(bundle.train.x.flatten(1)), bundle.train.y).backward()
        optimizer.step()
    accuracy = (model(bundle.test.x.flatten(1)).argmax(1) == bundle.test.y).float().mean().item()
    assert accuracy > 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"synthetic_shape": (3, 0, 4)}, "synthetic_shape"),
        ({"synthetic_shape": ()}, "synthetic_shape"),
        ({"synthetic_shape": (3, 2.5)}, "synthetic_shape must be an integer"),
        ({"synthetic_shape": "3x32x32"}, "sequence of integers"),
        ({"synthetic_classes": 1}, "synthetic_classes must be an integer >= 2"),
        ({"synthetic_size": (10, 0, 5)}, "three positive integers"),
        ({"synthetic_size": (10, 5)}, "three positive integers"),
        ({"split_seed": 0.5}, "split_seed must be an integer"),
    ],
)
def test_synthetic_bad_arguments(kwargs, message):
    with pytest.raises(PaituneError, match=message):
        load_dataset("synthetic", **kwargs)


# --- names and torchvision datasets ---------------------------------------------------------------


def test_dataset_names():
    assert DATASETS == ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100")


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(PaituneError, match=r"unknown dataset 'svhn'; choose one of: cifar10, cifar100, digits"):
        load_dataset("svhn")


@pytest.mark.parametrize(
    "name, folder", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_missing_data_root_says_where_and_how(tmp_path, name, folder):
    root = tmp_path / "nowhere"
    with pytest.raises(PaituneError) as caught:
        load_dataset(name, data_root=root)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{name} not found under {root}" in message
    assert f"--data-root DIR holding {folder}/" in message and "download=True" in message


def test_partially_present_files_name_the_missing_one(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(PaituneError, match=r"missing FashionMNIST/raw/train-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", data_root=tmp_path)


def _lay_out_files(root, name):
    spec = VISION_DATASETS[name]
    folder = root / spec.folder
    folder.mkdir(parents=True)
    for file in spec.files:
        (folder / file).write_bytes(b"")


def test_missing_torchvision_says_what_to_install(tmp_path, monkeypatch):
    _lay_out_files(tmp_path, "cifar10")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    with pytest.raises(PaituneError, match=r"pip install 'paitune\[vision\]'"):
        load_dataset("cifar10", data_root=tmp_path)


class _FakeTorchvisionDataset:
    """Stands in for torchvision's dataset classes: records its arguments, exposes .data/.targets."""

    calls: list[dict] = []
    image_shape: tuple[int, ...] = ()
    as_numpy = False
    n_train = 5030
    n_test = 20

    def __init__(self, root, train, download):
        type(self).calls.append({"root": root, "train": train, "download": download})
        n = self.n_train if train else self.n_test
        # Pixel value = index mod 256 in every position, so the normalization can be checked by hand.
        values = (torch.arange(n) % 256).to(torch.uint8).view(n, *([1] * len(self.image_shape)))
        data = values.expand(n, *self.image_shape).contiguous()
        self.data = data.numpy() if self.as_numpy else data
        labels = torch.arange(n) % 10
        self.targets = labels.tolist() if self.as_numpy else labels


@pytest.fixture
def fake_torchvision(monkeypatch):
    class MNIST(_FakeTorchvisionDataset):
        calls = []
        image_shape = (28, 28)

    class CIFAR10(_FakeTorchvisionDataset):
        calls = []
        image_shape = (32, 32, 3)  # CIFAR keeps channels last, as a numpy array
        as_numpy = True

    datasets = types.SimpleNamespace(MNIST=MNIST, CIFAR10=CIFAR10)
    module = types.ModuleType("torchvision")
    module.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", module)
    return datasets


def test_vision_loader_converts_normalizes_and_carves_val(tmp_path, fake_torchvision):
    _lay_out_files(tmp_path, "mnist")
    bundle = load_dataset("mnist", data_root=tmp_path)
    assert bundle.input_shape == (1, 28, 28) and bundle.num_classes == 10
    assert [len(bundle.train), len(bundle.val), len(bundle.test)] == [30, 5000, 20]
    assert bundle.train.x.shape == (30, 1, 28, 28) and bundle.test.x.dtype == torch.float32
    assert torch.bincount(bundle.val.y).tolist() == [500] * 10  # stratified carve from train
    # Test sample i has pixel value i: x = (i/255 - 0.1307) / 0.3081.
    expected = (torch.arange(20).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(bundle.test.x[:, 0, 3, 5], expected, atol=1e-6)
    assert bundle.test.y.tolist() == [i % 10 for i in range(20)]
    assert [c["download"] for c in fake_torchvision.MNIST.calls] == [False, False]
    assert fake_torchvision.MNIST.calls[0]["root"] == str(tmp_path.resolve())
    again = load_dataset("mnist", data_root=str(tmp_path) + "/.")
    assert again is bundle  # cached under the resolved root


def test_vision_loader_channels_last_numpy_and_download_flag(tmp_path, fake_torchvision):
    bundle = load_dataset("cifar10", data_root=tmp_path, download=True)  # no files needed when downloading
    assert bundle.train.x.shape == (30, 3, 32, 32) and bundle.num_classes == 10
    assert [c["download"] for c in fake_torchvision.CIFAR10.calls] == [True, True]
    mean = torch.tensor([0.4914, 0.4822, 0.4465])
    std = torch.tensor([0.2470, 0.2435, 0.2616])
    assert torch.allclose(bundle.test.x[7, :, 0, 0], (7 / 255 - mean) / std, atol=1e-6)
    # The carve depends on split_seed only.
    clear_cache()
    same = load_dataset("cifar10", data_root=tmp_path, download=True)
    assert torch.equal(same.train.x, bundle.train.x)


def test_vision_loader_turns_torchvision_errors_into_one_line(tmp_path, fake_torchvision, monkeypatch):
    def corrupted(*args, **kwargs):
        raise RuntimeError("Dataset not found or corrupted.\nYou can use download=True to download it")

    monkeypatch.setattr(fake_torchvision, "MNIST", corrupted)
    _lay_out_files(tmp_path, "mnist")
    with pytest.raises(PaituneError, match=r"could not load mnist from .*: Dataset not found or corrupted\. You can"):
        load_dataset("mnist", data_root=tmp_path)


# --- batching ---------------------------------------------------------------------------------


@pytest.fixture
def small_bundle():
    return load_dataset("synthetic", synthetic_shape=(3,), synthetic_classes=2, synthetic_size=(10, 4, 4))


def test_iterate_batches_in_order_without_shuffle(small_bundle):
    batches = list(iterate_batches(small_bundle.train, 4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), small_bundle.train.x)
    assert torch.equal(torch.cat([y for _, y in batches]), small_bundle.train.y)


def test_iterate_batches_shuffle_covers_each_sample_once_and_is_seeded(small_bundle):
    def epoch(seed):
        return list(iterate_batches(small_bundle.train, 3, shuffle=True, generator=torch.Generator().manual_seed(seed)))

    batches = epoch(0)
    xs = torch.cat([x for x, _ in batches])
    assert [len(y) for _, y in batches] == [3, 3, 3, 1]
    # Same rows, other order: sorting both by first feature gives the same tensor.
    assert torch.equal(xs[xs[:, 0].argsort()], small_bundle.train.x[small_bundle.train.x[:, 0].argsort()])
    assert not torch.equal(xs, small_bundle.train.x)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, epoch(0)))
    # x and y stay paired: each shuffled row's label is the label of that row in the split.
    ys = torch.cat([y for _, y in batches])
    for row, label in zip(xs, ys):
        (position,) = torch.nonzero((small_bundle.train.x == row).all(1)).flatten().tolist()
        assert small_bundle.train.y[position] == label


def test_iterate_batches_rejects_bad_batch_size(small_bundle):
    with pytest.raises(PaituneError, match="batch_size must be a positive integer"):
        next(iterate_batches(small_bundle.train, 0, shuffle=False))


def test_scoring_batches_deterministic_from_train(small_bundle):
    batches = scoring_batches(small_bundle, 2, 4, seed=3)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3), (4, 3)]
    again = scoring_batches(small_bundle, 2, 4, seed=3)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = scoring_batches(small_bundle, 2, 4, seed=4)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other))
    rows = torch.cat([x for x, _ in batches])
    assert len({tuple(r.tolist()) for r in rows}) == 8  # without replacement
    train_rows = {tuple(r.tolist()) for r in small_bundle.train.x}
    assert all(tuple(r.tolist()) in train_rows for r in rows)


def test_scoring_batches_wrap_when_asking_for_more_than_the_split(small_bundle):
    batches = scoring_batches(small_bundle, 3, 4, seed=0)  # 12 samples from 10
    rows = torch.cat([x for x, _ in batches])
    assert rows.shape == (12, 3)
    assert len({tuple(r.tolist()) for r in rows[:10]}) == 10  # a full pass before any repeat


def test_scoring_batches_rejects_bad_counts(small_bundle):
    with pytest.raises(PaituneError, match="n_batches must be a positive integer"):
        scoring_batches(small_bundle, 0, 4, seed=0)


def test_digits_read_without_sklearn_equals_load_digits():
    from sklearn.datasets import load_digits

    from paitune.data.digits import digits_arrays

    images, labels = digits_arrays()
    raw = load_digits()
    assert images.dtype == raw.images.dtype and np.array_equal(images, raw.images)
    assert np.array_equal(labels, raw.target)


def test_loading_digits_does_not_import_sklearn():
    # A fresh Ray worker pays every import before its first trial: digits must not need sklearn.
    code = "import sys; from paitune.data import load_dataset; load_dataset('digits'); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
