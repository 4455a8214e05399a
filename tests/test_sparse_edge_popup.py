"""Edge-popup: the straight-through top-k, frozen weights, learned scores, exact counts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from paitune.pruning import prunable_parameters
from paitune.sparse import EdgePopupNet
from paitune.trial import prepare_trial


def test_forward_uses_the_top_k_and_scores_get_the_straight_through_gradient():
    net = nn.Sequential(nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[2.0, -3.0, 0.5]]))
    popup = EdgePopupNet(net, sparsity=1 / 3, allocation="uniform", weight_init="model")
    with torch.no_grad():
        popup.scores[0].copy_(torch.tensor([[0.4, -0.1, -0.9]]))  # top-2 by |s|: weights 0 and 2
    x = torch.tensor([[1.0, 10.0, 4.0]])
    out = popup(x)
    assert float(out.detach()) == pytest.approx(2.0 * 1.0 + 0.5 * 4.0)
    out.sum().backward()
    # d out / d s_j = x_j * w_j * sign(s_j), for every weight, chosen or not.
    expected = torch.tensor([[1.0 * 2.0, -(10.0 * -3.0), -(4.0 * 0.5)]])
    assert torch.allclose(popup.scores[0].grad, expected)
    assert net[0].weight.grad is None and not net[0].weight.requires_grad


def test_signed_constant_init_keeps_the_signs_at_kaiming_magnitude():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    signs = {n: torch.sign(p.detach()).clone() for n, p in prunable_parameters(net).items()}
    EdgePopupNet(net, sparsity=0.5, allocation="uniform")
    for name, weight in prunable_parameters(net).items():
        fan_in = weight.shape[1]
        assert torch.allclose(weight.detach().abs(), torch.full_like(weight, math.sqrt(2.0 / fan_in)))
        assert torch.equal(torch.sign(weight.detach()), signs[name])


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_training_changes_only_scores_and_keeps_the_count_every_epoch(allocation):
    torch.set_num_threads(1)
    trial = prepare_trial({"method": "edge_popup", "sparsity": 0.9, "allocation": allocation, "epochs": 3, "seed": 4})
    frozen = copy.deepcopy(trial.model.state_dict())
    popup = trial.trainer.model
    scores = [s.detach().clone() for s in popup.scores]
    start = {n: m.clone() for n, m in trial.masks.items()}
    sizes = {n: m.numel() for n, m in start.items()}
    total = sum(sizes.values())
    while trial.trainer.epoch < trial.trainer.total_epochs:
        metrics = trial.trainer.run_epoch()
        masks = trial.masks_now()
        if allocation == "uniform":
            assert all(int(m.sum()) == round(0.1 * sizes[n]) for n, m in masks.items())
        assert sum(int(m.sum()) for m in masks.values()) == pytest.approx(round(0.1 * total), abs=len(sizes))
    assert all(torch.equal(v, trial.model.state_dict()[k]) for k, v in frozen.items())  # weights and biases
    assert all(not torch.equal(a, b.detach()) for a, b in zip(scores, popup.scores))
    final = trial.masks_now()
    assert any(not torch.equal(start[n], final[n]) for n in final)  # the chosen subnetwork moved
    assert metrics.val_acc > 0.3  # chance is 0.1: the scores found a working subnetwork
    # The forward pass is the frozen net with its weights times the final mask.
    masked = copy.deepcopy(trial.model)
    with torch.no_grad():
        for name, weight in prunable_parameters(masked).items():
            weight.mul_(final[name])
    x = trial.data.test.x[:32]
    popup.eval()
    assert torch.allclose(popup(x), masked(x), atol=1e-6)
    assert trial.final_facts()["density_achieved"] == pytest.approx(0.1, abs=1e-4)
