"""The masked training loop: determinism, masks held, resume from a state dict, divergence."""

from __future__ import annotations

import pytest
import torch
from resume import assert_same_run, straight_and_resumed

from paitune.data import load_dataset
from paitune.errors import PaituneError
from paitune.models import build_model
from paitune.pruning import prunable_parameters, prune
from paitune.training import Diverged, TrainConfig, Trainer, milestone_epochs, train


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


def _rates_per_epoch(cfg):
    """The rate each optimizer step of each epoch took, read from the optimizer at the step."""
    data, model, masks = setup()
    rates = {}

    def record(trainer):
        rates.setdefault(trainer.epoch + 1, set()).add(trainer.optimizer.param_groups[0]["lr"])

    trainer = Trainer(model, masks, data, cfg, step_hook=record)
    while trainer.epoch < cfg.epochs:
        trainer.run_epoch()
    assert all(len(seen) == 1 for seen in rates.values()), rates  # the rate changes only between epochs
    return [rates[epoch].pop() for epoch in range(1, cfg.epochs + 1)]


def test_multistep_multiplies_the_rate_by_gamma_after_each_milestone_epoch():
    cfg = TrainConfig(epochs=8, lr=0.1, gamma=0.1, lr_schedule="multistep", lr_milestones=[0.5, 0.75])
    assert _rates_per_epoch(cfg) == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2, rel=1e-12)
    cfg = TrainConfig(epochs=5, lr=0.2, gamma=0.5, lr_schedule="multistep", lr_milestones=[0.1, 0.5])
    assert _rates_per_epoch(cfg) == pytest.approx([0.2, 0.1, 0.05, 0.05, 0.05], rel=1e-12)  # epochs 1 and 2


def test_milestone_epochs_are_the_whole_epochs_of_each_fraction_at_least_1():
    assert milestone_epochs([0.5, 0.75], 8) == [4, 6]
    assert milestone_epochs([0.5, 0.75], 160) == [80, 120]  # GraSP's CIFAR recipe
    assert milestone_epochs([0.5, 0.75], 25) == [12, 18]  # int(12.5), int(18.75), as GraSP's code
    assert milestone_epochs([0.3], 5) == [1]  # 1.5
    assert milestone_epochs([0.05], 5) == [1]  # 0.25: at least 1


def test_nesterov_reaches_torch_sgd_and_changes_the_steps():
    data, model, masks = setup()
    nesterov = Trainer(model, masks, data, TrainConfig(epochs=1, nesterov=True))
    assert isinstance(nesterov.optimizer, torch.optim.SGD)
    assert nesterov.optimizer.param_groups[0]["nesterov"] is True
    assert nesterov.optimizer.param_groups[0]["momentum"] == 0.9
    data, model2, masks2 = setup()
    plain = Trainer(model2, masks2, data, TrainConfig(epochs=1))
    assert plain.optimizer.param_groups[0]["nesterov"] is False
    nesterov.run_epoch(), plain.run_epoch()
    weights = zip(nesterov.model.state_dict().values(), plain.model.state_dict().values())
    assert not all(torch.equal(a, b) for a, b in weights)


def test_resume_under_multistep_and_nesterov_is_bit_identical():
    cfg = TrainConfig(epochs=4, lr=0.05, seed=1, lr_schedule="multistep", lr_milestones=[0.25, 0.5], gamma=0.5,
                      nesterov=True)  # fmt: skip
    data = setup()[0]
    # saved after epoch 1, the first milestone: the resumed run trains epoch 2 at the decayed rate
    straight, resumed, _ = straight_and_resumed(lambda: setup()[1:], data, cfg)
    assert_same_run(straight, resumed)
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] == 0.05 * 0.5**2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(lr_schedule="poly"), "unknown lr schedule"),
        (dict(lr=0), "lr must be"),
        (dict(nesterov=True, optimizer="adam"), "nesterov applies to the sgd optimizer only, not 'adam'"),
        (dict(nesterov=True, momentum=0.0), "nesterov needs momentum > 0"),
        (dict(nesterov="yes"), "nesterov must be true or false"),
        (dict(lr_schedule="multistep", epochs=2), r"0.5 and 0.75 are both epoch 1"),
        (
            dict(lr_schedule="multistep", epochs=1, lr_milestones=[0.5]),
            "0.5 of the run falls at epoch 1 of 1, the last",
        ),
        (dict(lr_milestones=[0.75, 0.5]), "lr_milestones must be strictly increasing"),
        (dict(lr_milestones=[0.5, 0.5]), "lr_milestones must be strictly increasing"),
        (dict(lr_milestones=[0.0, 0.5]), r"lr_milestones\[0\] must be in \(0, 1\)"),
        (dict(lr_milestones=[0.5, 1.0]), r"lr_milestones\[1\] must be in \(0, 1\)"),
        (dict(lr_milestones=[]), "lr_milestones must be a list of numbers"),
    ],
)
def test_bad_train_config(kwargs, message):
    with pytest.raises(PaituneError, match=message) as err:
        TrainConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_milestones_are_checked_only_under_multistep():
    # epochs 2 leaves no room for the default milestones, which only multistep reads
    for schedule in ("cosine", "step", "constant"):
        assert TrainConfig(epochs=2, lr_schedule=schedule).lr_milestones == [0.5, 0.75]
    assert TrainConfig(epochs=4, lr_schedule="multistep").lr_milestones == [0.5, 0.75]
