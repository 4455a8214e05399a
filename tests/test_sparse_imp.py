"""Lottery tickets (IMP with rewinding): the round schedule, exact densities, rewinding, the budget unit."""

from __future__ import annotations

import copy

import pytest
import torch

from paitune.errors import PaituneError
from paitune.pruning import prunable_parameters
from paitune.sparse import imp_densities
from paitune.training import Trainer
from paitune.trial import prepare_trial, train_config


def test_round_densities_follow_powers_of_point_eight_and_end_at_the_target():
    d = imp_densities(0.9)
    assert len(d) == 12  # ceil(log 0.1 / log 0.8) = 11 pruning rounds + the dense run
    assert d[:-1] == pytest.approx([0.8**r for r in range(11)])
    assert d[-1] == pytest.approx(0.1) and d[-2] > 0.1
    assert imp_densities(1 - 0.8**2) == pytest.approx([1.0, 0.8, 0.64])  # an exact power: no extra round
    assert imp_densities(0.0) == [1.0]
    assert imp_densities(0.5, 0.5) == pytest.approx([1.0, 0.5])
    with pytest.raises(PaituneError, match="imp_prune_fraction"):
        imp_densities(0.5, 1.0)


def imp_trial(**extra):
    torch.set_num_threads(1)
    config = {"method": "imp", "sparsity": 0.5, "epochs": 2, "rewind_epoch": 1, "seed": 2, **extra}
    return prepare_trial(config)


def test_each_round_is_one_run_epoch_at_its_exact_density_with_nested_masks():
    trial = imp_trial()
    trainer = trial.trainer
    assert trainer.total_epochs == 5 and trial.prune_facts()["imp_rounds"] == 4  # 1, .8, .64, .512, .5
    assert trial.report.density == 1.0  # training starts dense
    total = sum(m.numel() for m in trial.masks.values())
    previous = None
    for r, density in enumerate(imp_densities(0.5)):
        metrics = trainer.run_epoch()
        assert (metrics.epoch, metrics.round) == (r + 1, r)
        assert metrics.epochs_trained == (2 if r == 0 else 1)  # later rounds rewind to epoch 1 of 2
        masks = trial.masks_now()
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == round(density * total) and metrics.density == pytest.approx(kept / total)
        params = prunable_parameters(trial.model)
        assert all(bool((params[n][~m] == 0).all()) for n, m in masks.items())
        if previous is not None:
            assert all(bool((masks[n] & ~previous[n]).sum() == 0) for n in masks)  # never revives
        previous = {n: m.clone() for n, m in masks.items()}
    assert trainer.epoch == trainer.total_epochs
    assert trial.final_facts()["density_achieved"] == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(PaituneError, match="rounds"):
        trainer.run_epoch()


def test_pruning_is_global_magnitude_and_rewinding_restores_the_rewind_point():
    trial = imp_trial()
    trainer = trial.trainer
    trainer.run_epoch()  # the dense run
    # The rewind point is the dense run's state after epoch 1: replay it with a plain trainer.
    replay_trial = imp_trial()
    replay = Trainer(replay_trial.model, None, replay_trial.data, train_config(replay_trial.config))
    replay.run_epoch()
    expected = {k: v.clone() for k, v in replay_trial.model.state_dict().items()}
    assert all(torch.equal(trainer.rewind_state["model"][k], expected[k]) for k in expected)

    trained = {n: p.detach().clone() for n, p in prunable_parameters(trial.model).items()}
    trainer.prune_and_rewind(0.8)
    masks = trial.masks_now()
    kept = torch.cat([trained[n][masks[n]].abs() for n in masks])
    removed = torch.cat([trained[n][~masks[n]].abs() for n in masks])
    assert float(kept.min()) >= float(removed.max())  # smallest |w| pruned, ranked across layers
    state = trial.model.state_dict()
    for name, value in expected.items():
        if name in masks:
            assert torch.equal(state[name][masks[name]], value[masks[name]])
            assert bool((state[name][~masks[name]] == 0).all())
        else:
            assert torch.equal(state[name], value)  # biases rewound too
    assert trainer.trainer.epoch == 1 and trainer.trainer.scheduler.last_epoch == 1


def test_rewinding_restores_the_learning_rate_but_starts_the_optimizer_without_momentum():
    # open_lth rewinds the weights and steps a fresh optimizer's schedule to the rewind point: the
    # momentum gathered by the dense run after that point must not carry into the pruned round.
    trial = imp_trial(momentum=0.9, lr_schedule="cosine", epochs=3)
    trainer = trial.trainer
    trainer.run_epoch()
    assert trainer.trainer.optimizer.state  # the dense run has momentum buffers
    rewind_lr = trainer.rewind_state["optimizer"]["param_groups"][0]["lr"]
    trainer.prune_and_rewind(0.8)
    optimizer = trainer.trainer.optimizer
    assert not optimizer.state
    assert [g["lr"] for g in optimizer.param_groups] == [rewind_lr] * len(optimizer.param_groups)
    assert rewind_lr < train_config(trial.config).lr  # one cosine epoch in: the schedule moved


def test_rewind_epoch_zero_rewinds_to_the_initialization():
    trial = imp_trial(rewind_epoch=0)
    init = copy.deepcopy(trial.model.state_dict())
    trial.trainer.run_epoch()
    assert all(torch.equal(trial.trainer.rewind_state["model"][k], v) for k, v in init.items())


def test_fixed_allocation_prunes_each_layer_to_its_round_density():
    trial = imp_trial(allocation="uniform", sparsity=0.36)
    for density in imp_densities(0.36):
        trial.trainer.run_epoch()
        for m in trial.masks_now().values():
            assert int(m.sum()) == round(density * m.numel())
