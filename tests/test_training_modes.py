"""Training modes: device augmentation, precision, channels-last, compile, eval_every, resume."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from resume import assert_same_run, straight_and_resumed

from paitune.data import load_dataset
from paitune.data.vision import VISION_DATASETS, black_pixel
from paitune.errors import PaituneError
from paitune.models import build_model
from paitune.pruning import prunable_parameters, prune
from paitune.training import Augmenter, CropFlip, TrainConfig, Trainer, modes, standard_policy

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def images(n=16, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def reference_crop_flip(x, top, left, flip, padding=4):
    """One image at a time, the way torchvision's RandomCrop(padding) + RandomHorizontalFlip do it."""
    h, w = x.shape[-2:]
    out = []
    for img, i, j, f in zip(x, top.tolist(), left.tolist(), flip.tolist()):
        crop = F.pad(img, (padding,) * 4)[:, i : i + h, j : j + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def cifar_like(train=96, shape=(3, 32, 32)):
    return load_dataset("synthetic", synthetic_shape=shape, synthetic_size=(train, 32, 32))


def pruned(data, model="resnet20", seed=0):
    net = build_model(model, data.input_shape, data.num_classes, seed=seed)
    return net, prune(net, "magnitude", sparsity=0.8, seed=seed)


def assert_masked(model, masks):
    params = prunable_parameters(model)
    for name, mask in masks.items():
        assert params[name].dtype == torch.float32
        assert torch.count_nonzero(params[name].detach()[~mask.to(params[name].device)]) == 0, name


def test_augmentation_is_deterministic_per_seed_and_changes_the_batch():
    x = images()
    a1, a2, other = (Augmenter("standard", "cifar10", (3, 32, 32), seed) for seed in (3, 3, 4))
    first, again, different = a1(x), a2(x), other(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, different)
    assert first.shape == x.shape and not torch.equal(first, x)
    # the stream moves on: the next batch gets new draws
    assert not torch.equal(a1(x), first)


def test_crop_flip_matches_a_per_image_reference_so_each_image_keeps_its_label():
    x = images(64)
    policy = CropFlip(padding=4, flip=True)
    top, left, flip = policy.draw(64, torch.Generator().manual_seed(0))
    assert 0 < int(flip.sum()) < 64 and int(top.min()) >= 0 and int(top.max()) <= 8
    out = policy.apply(x, top, left, flip)
    assert torch.equal(out, reference_crop_flip(x, top, left, flip))
    # a centred crop without a flip is the image itself: row i of the batch is image i
    n = torch.full((64,), 4)
    assert torch.equal(policy.apply(x, n, n, torch.zeros(64, dtype=torch.bool)), x)
    # channels-last input gives the same pixels
    assert torch.equal(policy.apply(x.contiguous(memory_format=torch.channels_last), top, left, flip), out)


def standardized(raw, name):
    spec = VISION_DATASETS[name]
    return (raw - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)


def test_the_padding_is_a_black_pixel_as_the_papers_pad_the_raw_image():
    """GraSP's, SynFlow's and open_lth's pipelines pad the raw image with black, then standardize:
    on the stored (standardized) CIFAR inputs the same crops show -mean/std in the border, not 0."""
    raw = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    policy = standard_policy("cifar10", (3, 32, 32))
    top, left, flip = policy.draw(24, torch.Generator().manual_seed(2))
    expected = standardized(reference_crop_flip(raw, top, left, flip), "cifar10")  # pad raw, then standardize
    assert torch.equal(policy.apply(standardized(raw, "cifar10"), top, left, flip), expected)
    corner = policy.apply(standardized(raw, "cifar10"), torch.zeros(24, dtype=torch.long), torch.zeros(24, dtype=torch.long),
                          torch.zeros(24, dtype=torch.bool))[:, :, 0, 0]  # fmt: skip
    assert torch.equal(corner, standardized(torch.zeros(1, 3, 1, 1), "cifar10").view(1, 3).expand(24, 3))


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not installed")
def test_crop_flip_matches_torchvision_on_the_same_draws():
    import torchvision.transforms.v2.functional as TF

    raw = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    spec = VISION_DATASETS["cifar10"]
    policy = standard_policy("cifar10", (3, 32, 32))
    top, left, flip = policy.draw(32, torch.Generator().manual_seed(1))
    expected = []
    for img, i, j, f in zip(raw, top.tolist(), left.tolist(), flip.tolist()):
        crop = TF.crop(TF.pad(img, [4]), i, j, 32, 32)  # torchvision's RandomCrop(32, padding=4) on the raw image
        crop = TF.horizontal_flip(crop) if f else crop
        expected.append(TF.normalize(crop, list(spec.mean), list(spec.std)))
    out = policy.apply(standardized(raw, "cifar10"), top, left, flip)
    torch.testing.assert_close(out, torch.stack(expected), rtol=0, atol=1e-6)


def test_standard_means_what_the_literature_trains_each_dataset_with():
    assert standard_policy("cifar10", (3, 32, 32)) == CropFlip(4, True, black_pixel("cifar10"))
    assert standard_policy("cifar100", (3, 32, 32)) == CropFlip(4, True, black_pixel("cifar100"))
    assert standard_policy("synthetic", (3, 32, 32)) == CropFlip(4, True)  # no raw image: padded with 0
    for name, shape in (("digits", (64,)), ("mnist", (1, 28, 28)), ("fashion_mnist", (1, 28, 28))):
        assert standard_policy(name, shape) is None
    assert not Augmenter("standard", "digits", (64,), 0).active
    x = images(4)
    assert Augmenter("none", "cifar10", (3, 32, 32), 0)(x) is x


def test_trainer_augments_the_batch_it_steps_on():
    data = cifar_like(train=32)
    seen = []
    runs = {}
    for augment in ("none", "standard"):
        model, masks = pruned(data, "cnn")
        handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if m.training else None)
        Trainer(model, masks, data, TrainConfig(epochs=1, batch_size=32, augment=augment, seed=0)).run_epoch()
        handle.remove()
        runs[augment] = seen.pop()
    # the same images in the same order (same data-order seed), augmented: labels still line up
    assert not torch.equal(runs["none"], runs["standard"])
    border = runs["standard"][:, :, :4, :].abs().sum((1, 2, 3)) == 0
    assert bool(border.any())  # some crops moved zero padding into view


# fp16 convolutions on the CPU are slow kernels: the fp16 cases use small images or an MLP.
@pytest.mark.parametrize(
    "precision, model, shape, channels_last",
    [
        ("bf16", "resnet20", (3, 32, 32), False),
        ("bf16", "resnet20", (3, 32, 32), True),
        ("fp16", "cnn", (3, 8, 8), False),
        ("fp16", "cnn", (3, 8, 8), True),
        ("fp16", "mlp", (3, 32, 32), False),
    ],
)
def test_masks_stay_exactly_zero_under_autocast(precision, model, shape, channels_last):
    torch.set_num_threads(1)
    data = cifar_like(train=64, shape=shape)
    net, masks = pruned(data, model)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, augment="standard", precision=precision,
                      channels_last=channels_last)  # fmt: skip
    trainer = Trainer(net, masks, data, cfg)
    history = [trainer.run_epoch() for _ in range(2)]
    assert_masked(net, masks)
    assert all(math.isfinite(m.train_loss) for m in history) and math.isfinite(history[-1].val_acc)
    assert (trainer.scaler is not None) == (precision == "fp16")
    if channels_last:
        conv = next(p for p in net.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)


def test_a_step_the_fp16_loss_scaler_skips_is_no_step_for_a_step_hook():
    # A DST hook (RigL) ranks the step's gradients: after an overflow they are inf, and the step
    # they belong to was never taken.
    torch.set_num_threads(1)
    data = cifar_like(train=64, shape=(3, 8, 8))
    calls = []
    for init_scale, expected in ((2.0**40, 0), (1.0, 8)):  # 2^40: every step of the epoch overflows
        net, masks = pruned(data, "mlp")
        cfg = TrainConfig(epochs=1, batch_size=8, lr=0.05, precision="fp16")
        trainer = Trainer(net, masks, data, cfg, step_hook=lambda t: calls.append(t.scaler.get_scale()))
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
        calls.clear()
        trainer.run_epoch()
        assert len(calls) == expected
        assert_masked(net, masks)


def _resume_matches(cfg, data, model_name="resnet20"):
    straight, resumed, state = straight_and_resumed(lambda: pruned(data, model_name), data, cfg)
    assert "augment" in state and ("scaler" in state) == (cfg.precision == "fp16")
    assert_same_run(straight, resumed)


@pytest.mark.parametrize("precision, model", [("bf16", "cnn"), ("fp16", "mlp")])
def test_resume_with_augmentation_and_mixed_precision_is_bit_identical(precision, model):
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=2, augment="standard", precision=precision)
    _resume_matches(cfg, cifar_like(train=64), model)


def test_eval_every_measures_every_kth_the_asked_and_the_last_epoch():
    data = load_dataset("digits")
    model, masks = pruned(data, "mlp")
    trainer = Trainer(model, masks, data, TrainConfig(epochs=7, eval_every=3))
    trainer.eval_epochs = {1}
    history = [trainer.run_epoch() for _ in range(7)]
    measured = [m.epoch for m in history if not math.isnan(m.val_acc)]
    assert measured == [1, 3, 6, 7]
    assert all(math.isnan(m.test_acc) == math.isnan(m.val_loss) for m in history)
    assert all(math.isfinite(m.train_loss) for m in history)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(augment="autoaugment"), "unknown augment"),
        (dict(precision="fp8"), "unknown precision"),
        (dict(channels_last="yes"), "channels_last must be true or false"),
        (dict(eval_every=0), "eval_every must be"),
        (dict(eval_every=1.5), "eval_every must be"),
    ],
)
def test_bad_mode_values(kwargs, message):
    with pytest.raises(PaituneError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.slow
def test_compile_keeps_masks_and_is_shared_by_trials_of_one_architecture():
    torch.set_num_threads(1)
    data = cifar_like(train=32, shape=(3, 8, 8))
    before = modes.compiled_count()
    results = []
    for seed in (0, 1):
        model, masks = pruned(data, "cnn", seed=seed)
        cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, precision="bf16", compile=True, seed=seed)
        trainer = Trainer(model, masks, data, cfg)
        results.append(trainer.run_epoch())
        assert_masked(model, masks)
    assert modes.compiled_count() == before + 1  # the second trial reused the first one's forward
    # the compiled forward computes what the model computes
    model.eval()
    x = data.val.x[:8]
    with torch.no_grad():
        assert torch.allclose(trainer.forward(x), model(x), atol=1e-5)
    assert math.isfinite(results[1].val_acc)


def test_trial_with_eval_every_reports_only_measured_epochs_and_every_rung(monkeypatch):
    """The trial function (Tune's side stubbed): rungs and the end are measured and reported; the
    epochs between travel in history_json with NaN val/test."""
    import json

    from paitune import trial as pipeline
    from paitune.search import trainable

    real_prepare = pipeline.prepare_trial

    def prepare(config, **kwargs):
        prepared = real_prepare(config, **kwargs)
        prepared.trainer.config.eval_every = 4
        return prepared

    reports = []
    monkeypatch.setattr(pipeline, "prepare_trial", prepare)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "report", lambda result, checkpoint=None: reports.append(result))
    # outside a Ray worker (this test process may have started Ray for other tests): one CPU
    monkeypatch.setattr(trainable, "assigned_device", lambda: ("cpu", 1))
    config = {"dataset": "digits", "model": "mlp", "epochs": 9, "method": "magnitude"}
    trainable.run_trial(config, checkpoint_every_s=1e9, report_every_s=0.0, report_epochs=(3,))
    assert [r["epoch"] for r in reports] == [3, 4, 8, 9]
    assert all(math.isfinite(r["val_acc"]) and math.isfinite(r["test_acc"]) for r in reports)
    between = [row for r in reports for row in json.loads(r["history_json"])]
    assert [row["epoch"] for row in between] == [1, 2, 5, 6, 7]
    assert all(math.isnan(row["val_acc"]) and math.isnan(row["test_acc"]) for row in between)


def test_an_epochs_draws_slice_into_the_same_batches_as_one_draw():
    x = images(40)
    whole, sliced = (Augmenter("standard", "cifar10", (3, 32, 32), 5) for _ in range(2))
    draws = sliced.draw_epoch(40, torch.device("cpu"))
    batches = torch.cat([sliced.apply(x[b : b + 16], draws, b) for b in range(0, 40, 16)])
    assert torch.equal(batches, whole(x))


def test_a_trial_on_a_gpu_turns_cudnn_autotuning_on_and_one_on_the_cpu_does_not(monkeypatch):
    from paitune.search import trainable

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    threads = torch.get_num_threads()
    try:
        trainable.use_resources("cpu", 1)
        assert torch.get_num_threads() == 1 and torch.backends.cudnn.benchmark is False
        trainable.use_resources("cuda", 1)  # only sets flags: no GPU needed
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.set_num_threads(threads)
