"""Allocation edge cases: LAMP on all-zero layers, over an iterative round's candidates, with tied
scores; uniform_plus when no layer is left to absorb the budget."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paitune.errors import PaituneError
from paitune.pruning import allocate, prunable_parameters, prune
from paitune.pruning.api import round_density
from paitune.pruning.scores import ScoringCopy, lamp_scores, snip_scores
from paitune.pruning.selection import select_global


def mlp(seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5))
    net.input_shape = (12,)
    return net


class Block(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.a = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.ba = nn.BatchNorm2d(o)
        self.b = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bb = nn.BatchNorm2d(o)
        self.sc = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = F.relu(self.ba(self.a(x)))
        return F.relu(self.bb(self.b(y)) + self.sc(x))


class TinyResNet(nn.Module):
    """stem, a block's two convs and its 1x1 shortcut, classifier: five prunable layers."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.l1 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.l1(F.relu(self.bn(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    model = TinyResNet()
    g = torch.Generator().manual_seed(1000 + seed)
    data = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g)) for _ in range(2)]
    return model, data


def kept(masks) -> list[int]:
    return [int(m.sum()) for m in masks.values()]


def reference_lamp(scores, candidates=None):
    """LAMP written out weight by weight: over each layer's candidates, ascending by score with ties
    by descending index (the lower index of a tie ranks higher); s^2 / (sum of s^2 from there on);
    a layer whose candidates all score 0 gives its top weight 1 and the others 0."""
    out = {}
    for name, s in scores.items():
        flat = s.reshape(-1).double()
        idx = (
            list(range(flat.numel()))
            if candidates is None
            else candidates[name].reshape(-1).nonzero().reshape(-1).tolist()
        )
        vals = [float(flat[i]) for i in idx]
        low = min(vals) if vals else 0.0
        vals = [v - low for v in vals] if low < 0 else vals
        order = sorted(range(len(idx)), key=lambda j: (vals[j], -idx[j]))
        res = torch.zeros(flat.numel(), dtype=torch.float64)
        suffix = 0.0
        for pos in reversed(range(len(order))):
            j = order[pos]
            suffix += vals[j] ** 2
            if pos == len(order) - 1:
                res[idx[j]] = 1.0
            else:
                res[idx[j]] = vals[j] ** 2 / suffix if suffix > 0 else 0.0
        out[name] = res.reshape(s.shape)
    return out


# --- 1. a layer whose scores are all zero ----------------------------------------------------


def test_lamp_all_zero_layer_scores_its_top_weight_one_and_the_rest_zero():
    out = lamp_scores({"z": torch.zeros(2, 3), "w": torch.tensor([3.0, 4.0])})
    assert out["z"].reshape(-1).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert out["w"].tolist() == [9.0 / 25.0, 1.0]
    # signed scores that are all equal shift to all zero: the same rule
    assert lamp_scores({"g": torch.full((4,), -2.0)})["g"].tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("zero_layer", [0, 4])
def test_lamp_zero_initialised_layer_keeps_one_weight_and_empties_no_layer(zero_layer):
    net = mlp()
    nn.init.zeros_(net[zero_layer].weight)
    masks = prune(net, "magnitude", sparsity=0.9, allocation="lamp")
    counts = dict(zip(masks, kept(masks)))
    assert masks.kept() == round(0.1 * masks.total())
    assert counts[f"{zero_layer}.weight"] == 1 and bool(masks[f"{zero_layer}.weight"].reshape(-1)[0])
    assert all(c > 0 for c in counts.values()), counts
    # the other layers share the rest as LAMP ranks their magnitudes
    params = prunable_parameters(net)
    ref = select_global(reference_lamp({n: p.detach().abs() for n, p in params.items()}), 0.1)
    assert all(torch.equal(masks[n], ref[n]) for n in masks)


@pytest.mark.parametrize("iterations", [4, 5])
def test_force_lamp_empties_no_layer_when_a_layer_scores_zero(iterations):
    model, data = tiny_resnet()
    masks = prune(model, "force", sparsity=0.99, allocation="lamp", batches=data, iterations=iterations, seed=0)
    assert masks.kept() == round(0.01 * masks.total())
    assert all(c > 0 for c in kept(masks)), kept(masks)


# --- 2. iterative rounds: LAMP over the round's candidates ------------------------------------


def test_lamp_scores_over_candidates_ignore_the_other_weights():
    s = {"a": torch.tensor([[5.0, 1.0], [2.0, 3.0]]), "b": torch.tensor([-1.0, 4.0, -3.0])}
    cand = {"a": torch.tensor([[False, True], [True, True]]), "b": torch.tensor([True, False, True])}
    out = lamp_scores(s, candidates=cand)
    # a over {1, 2, 3}: 1/14, 4/13, 1; b over {-1, -3} shifted by 3: {2, 0} -> 1, 0
    assert out["a"].tolist() == [[0.0, 1.0 / 14.0], [4.0 / 13.0, 1.0]]
    assert out["b"].tolist() == [1.0, 0.0, 0.0]
    ref = reference_lamp(s, cand)
    assert all(torch.equal(out[n], ref[n]) for n in s)


def test_iterative_snip_lamp_normalizes_over_the_alive_weights():
    model, data = tiny_resnet()
    sparsity, rounds = 0.99, 5
    masks = prune(model, "iterative_snip", sparsity=sparsity, allocation="lamp", batches=data, iterations=rounds)
    assert all(c > 0 for c in kept(masks)), kept(masks)
    # independent re-computation: each round, SNIP on the masked net, LAMP over the alive weights
    scratch, ref = ScoringCopy(model), None
    for t in range(1, rounds + 1):
        normalized = reference_lamp(snip_scores(scratch, ref, data), ref)
        ref = select_global(normalized, round_density(1.0 - sparsity, t, rounds, "exponential"), ref)
    assert all(torch.equal(masks[n], ref[n]) for n in masks)


def test_synflow_lamp_rounds_empty_no_layer():
    model, _ = tiny_resnet()
    model.input_shape = (3, 8, 8)
    masks = prune(model, "synflow", sparsity=0.99, allocation="lamp", iterations=10)
    assert masks.kept() == round(0.01 * masks.total()) and all(c > 0 for c in kept(masks))


# --- 3. ties go to the lower flat index ---------------------------------------------------------


def test_lamp_ties_go_to_the_lower_flat_index():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[2].weight.fill_(0.5)
    masks = prune(net, "magnitude", sparsity=0.75, allocation="lamp")
    assert [m.reshape(-1).nonzero().reshape(-1).tolist() for m in masks.values()] == [[0, 1, 2, 3]] * 2
    out = lamp_scores({"w": torch.tensor([2.0, 1.0, 2.0, 1.0])})["w"]
    assert out.tolist() == [1.0, 1.0 / 9.0, 4.0 / 8.0, 1.0 / 10.0]  # squares 4, 1, 4, 1


def test_lamp_scores_of_distinct_values_are_the_formula_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(6, 7, generator=g), "b": torch.rand(40, generator=g, dtype=torch.float64)}
    out = lamp_scores(scores)
    for name, s in scores.items():
        flat = s.reshape(-1).double()
        flat = flat - flat.min() if flat.min() < 0 else flat
        sq, order = torch.sort(flat**2)
        suffix = torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0])
        expected = torch.empty_like(flat)
        expected[order] = sq / suffix
        assert torch.equal(out[name].reshape(-1), expected)


# --- 4. uniform_plus with no layer left to absorb the budget -------------------------------------


CONV_LINEAR = {"conv": (8, 3, 3, 3), "fc": (10, 288)}


@pytest.mark.parametrize(
    "shapes, sparsity",
    [(CONV_LINEAR, 0.8), (CONV_LINEAR, 0.9), ({"w": (16, 3, 3, 3)}, 0.95), ({"w": (10, 100)}, 0.95)],
)
def test_uniform_plus_refuses_a_sparsity_no_layer_can_absorb(shapes, sparsity):
    with pytest.raises(PaituneError, match="uniform_plus cannot meet") as info:
        allocate(shapes, sparsity, "uniform_plus")
    assert "\n" not in str(info.value)
    bound = float(re.search(r"at most ([-0-9.e]+)", str(info.value)).group(1))
    assert bound < sparsity
    if bound > 0.01:  # the sparsity it names is one the rule meets
        allocate(shapes, bound - 0.005, "uniform_plus")


def test_smart_ratio_refusal_names_the_largest_sparsity_its_linear_layers_allow():
    shapes = {"c1": (6, 1, 5, 5), "c2": (16, 6, 5, 5), "f1": (120, 256), "f2": (10, 120)}
    total = sum(math.prod(v) for v in shapes.values())
    with pytest.raises(PaituneError, match="smart_ratio cannot meet") as info:
        allocate(shapes, 0.9, "smart_ratio")
    bound = float(re.search(r"at most ([-0-9.e]+)", str(info.value)).group(1))
    assert bound == pytest.approx(1 - 0.3 * (120 * 256 + 10 * 120) / total, abs=1e-4)
    allocate(shapes, bound - 0.005, "smart_ratio")


def test_uniform_plus_prune_refuses_instead_of_missing_the_sparsity():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    with pytest.raises(PaituneError, match="uniform_plus cannot meet"):
        prune(net, "magnitude", sparsity=0.8, allocation="uniform_plus")


def test_uniform_plus_still_meets_what_the_fixed_layers_allow():
    d = allocate(CONV_LINEAR, 0.5, "uniform_plus")
    sizes = {"conv": 216, "fc": 2880}
    assert d["conv"] == 1.0 and sum(d[n] * sizes[n] for n in sizes) == pytest.approx(0.5 * 3096)
    assert allocate({"w": (16, 3, 3, 3)}, 0.0, "uniform_plus") == {"w": 1.0}
    assert allocate({"w": (10, 100)}, 0.8, "uniform_plus") == {"w": pytest.approx(0.2)}


def test_a_normalizer_without_candidates_keeps_its_one_argument_call():
    from paitune.pruning import AllocationSpec, register_allocation

    seen = []
    spec = AllocationSpec("plain_normalizer", normalize=lambda scores: seen.append(scores) or scores)
    scores = {"w": torch.ones(3)}
    assert spec.normalize_round(scores, {"w": torch.tensor([True, False, True])}) is scores and seen == [scores]
    assert AllocationSpec("no_normalizer").normalize_round(scores, None) is scores
    with pytest.raises(ValueError, match="normalize_candidates needs a normalize"):
        register_allocation(AllocationSpec("candidates_alone", normalize_candidates=True))
