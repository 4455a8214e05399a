"""The masked training loop: determinism, masks held, resume from a state dict, divergence."""

from __future__ import annotations

import pytest
import torch

from paitune.data import load_dataset
from paitune.errors import PaituneError
from paitune.models import build_model
from paitune.pruning import prunable_parameters, prune
from paitune.training import Diverged, TrainConfig, Trainer, train


def setup(seed=0, sparsity=0.8, method="magnitude"):
    torch.set_num_threads(1)
    data = load_dataset("digits")
    model = build_model("mlp", data.input_shape, data.num_classes, seed=seed)
    masks = prune(model, method, sparsity=sparsity, seed=seed)
    return data, model, masks


def test_training_learns_keeps_masks_and_is_deterministic():
    runs = []
    for _ in range(2):
        data, model, masks = setup()
        history = train(model, masks, data, TrainConfig(epochs=3, lr=0.05, seed=0))
        runs.append([m.to_dict() | {"seconds": 0} for m in history])
        params = prunable_parameters(model)
        assert all(bool((params[n][~m] == 0).all()) for n, m in masks.items())
    assert runs[0] == runs[1]
    assert runs[0][-1]["val_acc"] > 0.8 and runs[0][-1]["train_loss"] < runs[0][0]["train_loss"]
    assert [r["epoch"] for r in runs[0]] == [1, 2, 3]


def test_resume_from_state_dict_continues_identically():
    data, model, masks = setup()
    cfg = TrainConfig(epochs=4, lr=0.05, seed=1, lr_schedule="step", step_size=1)
    straight = Trainer(model, masks, data, cfg)
    for _ in range(4):
        straight.run_epoch()

    data, model, masks = setup()
    first = Trainer(model, masks, data, cfg)
    first.run_epoch(), first.run_epoch()
    state = first.state_dict()
    data, model2, masks2 = setup()
    resumed = Trainer(model2, masks2, data, cfg)
    resumed.load_state_dict(state)
    resumed.run_epoch(), resumed.run_epoch()
    strip = lambda h: [m.to_dict() | {"seconds": 0} for m in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


def test_adam_and_schedules_run():
    for cfg in (
        TrainConfig(epochs=2, optimizer="adam", lr=1e-3, lr_schedule="constant"),
        TrainConfig(epochs=2, lr_schedule="cosine"),
    ):
        data, model, masks = setup()
        history = train(model, masks, data, cfg)
        assert len(history) == 2


def test_on_epoch_can_stop_early():
    data, model, masks = setup()
    seen = []
    history = train(model, masks, data, TrainConfig(epochs=5), on_epoch=lambda m: seen.append(m.epoch) or m.epoch < 2)
    assert seen == [1, 2] and len(history) == 2


def test_divergence_is_detected_with_last_good_metrics():
    data, model, masks = setup()
    trainer = Trainer(model, masks, data, TrainConfig(epochs=5, lr=1e12, momentum=0.0, weight_decay=0.0))
    with pytest.raises(Diverged) as err:
        for _ in range(5):
            trainer.run_epoch()
    assert err.value.epoch >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(lr_schedule="poly"), "unknown lr schedule"),
        (dict(lr=0), "lr must be"),
    ],
)
def test_bad_train_config(kwargs, message):
    with pytest.raises(PaituneError, match=message):
        TrainConfig(**kwargs)
