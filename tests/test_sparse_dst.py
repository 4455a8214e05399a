"""Dynamic sparse training (SET, RigL): hand-checked updates, the drop schedule, density held, the hook."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paitune.pruning import Masks, prunable_parameters, prune
from paitune.sparse import MaskUpdater, drop_fraction_at
from paitune.sparse.dst import reset_optimizer_state
from paitune.training import TrainConfig, Trainer
from paitune.trial import prepare_trial


def tiny_layer(weights, grads=None) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(len(weights[0]), len(weights), bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weights, dtype=torch.float32))
    if grads is not None:
        net[0].weight.grad = torch.tensor(grads, dtype=torch.float32)
    return net


def test_rigl_drops_smallest_active_and_regrows_largest_gradient_hand_case():
    # 2x4 layer, 4 active weights. alpha 0.5 moves floor(0.5 * 4) = 2 of them.
    weights = [[0.9, -0.1, 0.0, 0.0], [0.0, 0.5, -0.05, 0.0]]
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    # Drops |w| 0.1 at (0,1) and 0.05 at (1,2). Regrowth ranks every weight not kept, the dropped
    # ones included (RigL's code): (0,1) has the largest |g| of all and comes straight back, then
    # (1,3) 0.8 beats (0,2) 0.7.
    grads = [[0.0, 5.0, -0.7, 0.6], [0.2, 0.0, 0.0, 0.8]]
    net = tiny_layer(weights, grads)
    updater = MaskUpdater("rigl", total_steps=100)
    new, grown = updater.updated_masks(net, Masks({"0.weight": mask}), 0.5)
    expected = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(new["0.weight"], expected)
    assert torch.equal(grown["0.weight"], torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool))
    assert int(new["0.weight"].sum()) == int(mask.sum())
    weight = net[0].weight.detach()
    assert float(weight[1, 3]) == 0.0  # a new weight starts at zero
    assert float(weight[0, 1]) == pytest.approx(-0.1)  # the one regrown at once keeps its value


def test_set_regrows_at_random_among_the_weights_it_does_not_keep_and_keeps_counts():
    torch.manual_seed(0)
    net = tiny_layer(torch.randn(20, 30).tolist())
    mask = torch.rand(20, 30) < 0.2
    updater = MaskUpdater("set", total_steps=100, seed=3)
    new, grown = updater.updated_masks(net, Masks({"0.weight": mask}), 0.3)
    moved = int(0.3 * int(mask.sum()))
    assert 0 < int(grown["0.weight"].sum()) <= moved
    assert not bool((grown["0.weight"] & mask).any())  # new = inactive before the update
    assert int(new["0.weight"].sum()) == int(mask.sum())
    # The active - moved largest |w| of the old mask all survive (random weights: no ties).
    magnitude = net[0].weight.detach().abs()
    cut = magnitude[mask].sort(descending=True).values[int(mask.sum()) - moved - 1]
    survivors = mask & (magnitude >= cut)
    assert int(survivors.sum()) == int(mask.sum()) - moved and bool(new["0.weight"][survivors].all())
    # Seeded: the same seed regrows the same weights; another seed others.
    again, _ = MaskUpdater("set", total_steps=100, seed=3).updated_masks(net, Masks({"0.weight": mask}), 0.3)
    other, _ = MaskUpdater("set", total_steps=100, seed=4).updated_masks(net, Masks({"0.weight": mask}), 0.3)
    assert torch.equal(again["0.weight"], new["0.weight"]) and not torch.equal(other["0.weight"], new["0.weight"])


def test_a_full_drop_at_high_density_regrows_by_gradient_among_all_weights():
    # 3 of 4 active, alpha 1: all 3 dropped, the 3 largest |g| of all 4 regrown (RigL's rule); the
    # dropped weight with the smallest gradient stays out, and the inactive one comes in at zero.
    net = tiny_layer([[1.0, 2.0, 3.0, 4.0]], [[0.1, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    new, grown = MaskUpdater("rigl", total_steps=10).updated_masks(net, Masks({"0.weight": mask}), 1.0)
    assert torch.equal(new["0.weight"], torch.tensor([[0, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(grown["0.weight"], torch.tensor([[0, 0, 0, 1]], dtype=torch.bool))
    assert net[0].weight.detach().tolist() == [[1.0, 2.0, 3.0, 0.0]]


def test_ties_in_drop_and_regrowth_go_to_the_lower_index():
    # Equal magnitudes and equal (zero) gradients: the kept and regrown weights are the first ones.
    net = tiny_layer([[1.0] * 6 + [0.0] * 6], [[0.0] * 12])
    mask = torch.tensor([[1] * 6 + [0] * 6], dtype=torch.bool)
    new, grown = MaskUpdater("rigl", total_steps=10).updated_masks(net, Masks({"0.weight": mask}), 0.5)
    # keeps indices 0-2 (lowest of the tied |w|), regrows the lowest of the rest: 3-5 again.
    assert torch.equal(new["0.weight"], mask) and grown == {}


def test_cosine_drop_schedule():
    end = 750
    assert drop_fraction_at(0, initial=0.3, end_step=end) == pytest.approx(0.3)
    assert drop_fraction_at(375, initial=0.3, end_step=end) == pytest.approx(0.15)
    assert drop_fraction_at(250, initial=0.3, end_step=end) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))
    assert drop_fraction_at(750, initial=0.3, end_step=end) == 0.0
    assert drop_fraction_at(900, initial=0.3, end_step=end) == 0.0
    assert drop_fraction_at(375, initial=0.3, end_step=end, schedule="linear") == pytest.approx(0.15)
    assert drop_fraction_at(700, initial=0.3, end_step=end, schedule="constant") == 0.3


def test_regrown_weights_lose_their_momentum():
    net = tiny_layer([[1.0, 2.0], [3.0, 4.0]])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net[0].weight.grad = torch.ones(2, 2)
    optimizer.step()
    grown = {"0.weight": torch.tensor([[True, False], [False, True]])}
    reset_optimizer_state(optimizer, prunable_parameters(net), grown)
    buffer = optimizer.state[net[0].weight]["momentum_buffer"]
    assert torch.equal(buffer, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def dst_config(method, **extra):
    return {"method": method, "sparsity": 0.9, "allocation": "erk", "epochs": 3, "update_interval": 3,
            "seed": 1, **extra}  # fmt: skip


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_changes_the_mask_but_keeps_every_layer_count_after_every_epoch(method):
    torch.set_num_threads(1)
    trial = prepare_trial(dst_config(method))
    start = {name: m.clone() for name, m in trial.masks.items()}
    counts = {name: int(m.sum()) for name, m in start.items()}
    target = trial.report.density
    assert target == pytest.approx(0.1, abs=1e-3)
    trainer = trial.trainer
    seen_changes = 0
    while trainer.epoch < trainer.total_epochs:
        before = {name: m.clone() for name, m in trial.masks_now().items()}
        trainer.run_epoch()
        now = trial.masks_now()
        assert {name: int(m.sum()) for name, m in now.items()} == counts
        assert trial.final_facts()["density_achieved"] == pytest.approx(target)
        params = prunable_parameters(trial.model)
        assert all(bool((params[name][~m] == 0).all()) for name, m in now.items())
        seen_changes += sum(int((before[n] != now[n]).sum()) for n in now) > 0
    assert seen_changes >= 2  # 27 steps, updates every 3 until step 20: the mask moved in several epochs
    progress = trial.method_progress()
    assert progress["dst_updates"] == 6 and progress["dst_moved"] > 0
    assert trial.final_facts()["mask_hash"] != trial.mask_hash


def test_dst_starts_from_the_chosen_static_mask():
    torch.set_num_threads(1)
    trial = prepare_trial(dst_config("rigl", init_method="magnitude", allocation="uniform", epochs=1))
    reference = prune(trial.model, "magnitude", sparsity=0.9, allocation="uniform", seed=1)
    assert all(torch.equal(trial.masks[n], reference[n]) for n in reference)
    assert trial.masks.meta["method"] == "rigl" and trial.masks.meta["init_method"] == "magnitude"


def test_no_updates_after_drop_until():
    torch.set_num_threads(1)
    trial = prepare_trial(dst_config("rigl", drop_until=0.3))  # 27 steps: updates at 3 and 6 only
    while trial.trainer.epoch < trial.trainer.total_epochs:
        trial.trainer.run_epoch()
    assert trial.method_progress()["dst_updates"] == 2


def test_static_trainer_state_has_no_mask_or_hook_entries_and_set_masks_holds_new_zeros():
    torch.set_num_threads(1)
    trial = prepare_trial({"method": "magnitude", "sparsity": 0.5, "epochs": 2})
    trainer = trial.trainer
    assert trainer.step_hook is None and set(trainer.state_dict()) == {
        "model", "optimizer", "scheduler", "epoch", "generator", "history"}  # fmt: skip
    name = next(iter(trial.masks))
    new = {n: m.clone() for n, m in trial.masks.items()}
    alive = new[name].nonzero()[0]
    new[name][tuple(alive)] = False
    trainer.set_masks(new)
    trainer.run_epoch()
    assert float(prunable_parameters(trial.model)[name].detach()[tuple(alive)]) == 0.0
    assert torch.equal(trainer.state_dict()["masks"][name], new[name])


def test_step_hook_sees_every_step_with_gradients():
    torch.set_num_threads(1)
    trial = prepare_trial({"method": "random", "sparsity": 0.5, "epochs": 1})
    calls = []

    def hook(trainer):
        calls.append(all(p.grad is not None for p in prunable_parameters(trainer.model).values()))

    trainer = Trainer(trial.model, trial.masks, trial.data, TrainConfig(epochs=1, batch_size=100), step_hook=hook)
    trainer.run_epoch()
    assert calls == [True] * math.ceil(trial.data.train.y.shape[0] / 100)
