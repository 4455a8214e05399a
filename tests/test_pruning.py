"""The pruning API against hand-checked cases and independent re-computations of each paper's score."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paitune.errors import PaituneError
from paitune.pruning import (
    ALLOCATIONS,
    CONTROLS,
    DEFAULT_ITERATIONS,
    METHODS,
    MaskEnforcer,
    allocate,
    apply_masks,
    count_flops,
    from_torch_prune,
    full_masks,
    has_input_output_path,
    mask_hash,
    mask_report,
    prunable_parameters,
    prune,
    to_torch_prune,
)
from paitune.pruning.selection import select_global, top_k_mask


def two_layer(w1, w2) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(len(w1[0]), len(w1), bias=False), nn.ReLU(), nn.Linear(len(w2[0]), len(w2), bias=False)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1, dtype=torch.float32))
        net[2].weight.copy_(torch.tensor(w2, dtype=torch.float32))
    net.input_shape = (len(w1[0]),)
    return net


def small_cnn(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )
    net.input_shape = (1, 8, 8)
    return net


def batches(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)) for _ in range(n)]


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, model.training, [p.grad for p in model.parameters()]


# --- selection -----------------------------------------------------------------------------


def test_top_k_keeps_exactly_k_and_breaks_ties_by_lower_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, float("nan")])
    assert top_k_mask(scores, 2).tolist() == [False, True, True, False, False, False]
    assert top_k_mask(scores, 4).tolist() == [False, True, True, True, True, False]
    assert top_k_mask(scores, 0).sum() == 0 and top_k_mask(scores, 6).all()


def test_global_selection_ranks_across_layers_in_layer_order():
    scores = {"a": torch.tensor([[5.0, 1.0]]), "b": torch.tensor([[5.0, 4.0, 0.0]])}
    masks = select_global(scores, 0.4)  # round(0.4 * 5) = 2: both 5.0s (tie -> both kept)
    assert masks["a"].tolist() == [[True, False]] and masks["b"].tolist() == [[True, False, False]]
    masks = select_global(scores, 0.2)  # one: the tied 5.0 in the earlier layer
    assert masks["a"].tolist() == [[True, False]] and not masks["b"].any()


# --- methods against hand-computed scores ----------------------------------------------------


W1 = [[0.5, -2.0], [0.1, 0.3], [-1.0, 0.2]]
W2 = [[1.0, -0.5, 0.25], [0.2, 0.1, -3.0]]


def test_magnitude_global_keeps_largest_absolute_weights():
    net = two_layer(W1, W2)
    masks = prune(net, "magnitude", sparsity=1 - 4 / 12)  # keep 4 of 12: |-3|, |-2|, |1|, |-1| (tie: earlier)
    assert masks["0.weight"].tolist() == [[False, True], [False, False], [True, False]]
    assert masks["2.weight"].tolist() == [[True, False, False], [False, False, True]]


def test_magnitude_uniform_keeps_top_per_layer():
    net = two_layer(W1, W2)
    masks = prune(net, "magnitude", sparsity=0.5, allocation="uniform")
    assert masks["0.weight"].tolist() == [[True, True], [False, False], [True, False]]
    assert masks["2.weight"].tolist() == [[True, True, False], [False, False, True]]


def test_snip_scores_are_mask_gradients():
    torch.manual_seed(1)
    net = two_layer(torch.randn(6, 4).tolist(), torch.randn(3, 6).tolist())
    data = [(torch.randn(10, 4), torch.randint(0, 3, (10,))), (torch.randn(10, 4), torch.randint(0, 3, (10,)))]
    # Independent: explicit mask variables of ones in the forward pass, CE summed over batches.
    m1 = torch.ones(6, 4, requires_grad=True)
    m2 = torch.ones(3, 6, requires_grad=True)
    loss = sum(
        F.cross_entropy(F.linear(F.relu(F.linear(x, net[0].weight.detach() * m1)), net[2].weight.detach() * m2), y)
        for x, y in data
    )
    g1, g2 = torch.autograd.grad(loss, [m1, m2])
    scores = torch.cat([g1.abs().reshape(-1), g2.abs().reshape(-1)])
    expected = top_k_mask(scores, 10)
    masks = prune(net, "snip", sparsity=1 - 10 / 42, batches=data)
    got = torch.cat([masks["0.weight"].reshape(-1), masks["2.weight"].reshape(-1)])
    assert torch.equal(got, expected)


def test_grasp_keeps_largest_w_times_hessian_gradient():
    torch.manual_seed(2)
    net = two_layer(torch.randn(5, 4).tolist(), torch.randn(3, 5).tolist())
    data = [(torch.randn(12, 4), torch.randint(0, 3, (12,)))]
    w = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]

    def loss_fn(a, b):
        x, y = data[0]
        return F.cross_entropy(F.linear(F.relu(F.linear(x, a)), b) / 200.0, y)

    a, b = [t.clone().requires_grad_() for t in w]
    grads = torch.autograd.grad(loss_fn(a, b), [a, b])
    _, hg = torch.autograd.functional.hvp(loss_fn, tuple(w), tuple(gr.detach() for gr in grads))
    scores = torch.cat([(w[0] * hg[0]).reshape(-1), (w[1] * hg[1]).reshape(-1)])
    expected = top_k_mask(scores, 14)
    masks = prune(net, "grasp", sparsity=1 - 14 / 35, batches=data)
    got = torch.cat([masks["0.weight"].reshape(-1), masks["2.weight"].reshape(-1)])
    assert torch.equal(got, expected)
    # invert keeps the smallest signed scores: the order reversed, not 1/score
    inverted = prune(net, "grasp", sparsity=1 - 14 / 35, batches=data, control="invert")
    got = torch.cat([inverted["0.weight"].reshape(-1), inverted["2.weight"].reshape(-1)])
    assert torch.equal(got, top_k_mask(-scores, 14))


def test_synflow_one_round_matches_closed_form():
    # f(1) = 1^T |W2| |W1| 1 for a positive linear net: dR/dW1_ij = (1^T|W2|)_i, dR/dW2_ki = (|W1| 1)_i.
    net = two_layer(W1, W2)
    a1, a2 = torch.tensor(W1).abs(), torch.tensor(W2).abs()
    s1 = a1 * a2.sum(0)[:, None]
    s2 = a2 * a1.sum(1)[None, :]
    expected = top_k_mask(torch.cat([s1.reshape(-1), s2.reshape(-1)]), 5)
    masks = prune(net, "synflow", sparsity=1 - 5 / 12, iterations=1)
    got = torch.cat([masks["0.weight"].reshape(-1), masks["2.weight"].reshape(-1)])
    assert torch.equal(got, expected)


def test_synflow_default_is_100_rounds_and_never_revives():
    net = small_cnn()
    masks = prune(net, "synflow", sparsity=0.9)
    assert masks.meta["iterations"] == 100
    few = prune(net, "synflow", sparsity=0.9, iterations=3, schedule="linear")
    assert few.kept() == masks.kept()


class UnusedHead(nn.Module):
    """A prunable layer the forward never reaches (an auxiliary head): it gets no gradient."""

    def __init__(self):
        super().__init__()
        self.a, self.aux, self.b = nn.Linear(6, 10), nn.Linear(10, 3), nn.Linear(10, 3)
        self.input_shape = (6,)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("method", ["snip", "synflow", "iterative_snip", "force", "prospr", "ntk_sap"])
def test_a_layer_without_gradient_scores_zero_in_every_gradient_method(method):
    torch.manual_seed(0)
    net = UnusedHead()
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,)))]
    # 90 weights reach the output and 60 are kept: the head's 30 zero scores are never among them.
    masks = prune(net, method, sparsity=0.5, batches=data, iterations=2 if method != "snip" else None)
    assert masks.kept() == 60 and int(masks["aux.weight"].sum()) == 0


@pytest.mark.filterwarnings("ignore:control 'reinit'")
@pytest.mark.parametrize("method", [m for m in METHODS if m != "dense"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_prune_scores_with_gradients_under_a_callers_no_grad_or_inference_mode(method, mode):
    iterations = 2 if method in DEFAULT_ITERATIONS else None
    reference = prune(small_cnn(), method, sparsity=0.7, batches=batches(1), iterations=iterations, control="reinit")
    with getattr(torch, mode)():
        net, data = small_cnn(), batches(1)  # model and batches made in that mode too
        masks = prune(net, method, sparsity=0.7, batches=data, iterations=iterations, control="reinit")
    assert all(torch.equal(masks[n], reference[n]) and not masks[n].is_inference() for n in reference)
    assert all(torch.equal(masks.weights[n], reference.weights[n]) for n in reference.weights)


def test_iterative_snip_one_round_is_snip_and_force_differs_from_iterative():
    net, data = small_cnn(), batches()
    one = prune(net, "iterative_snip", sparsity=0.8, batches=data, iterations=1)
    snip = prune(net, "snip", sparsity=0.8, batches=data)
    assert all(torch.equal(one[n], snip[n]) for n in snip)
    it = prune(net, "iterative_snip", sparsity=0.95, batches=data, iterations=10)
    force = prune(net, "force", sparsity=0.95, batches=data, iterations=10)
    assert it.kept() == force.kept()
    assert any(not torch.equal(it[n], force[n]) for n in it)


def test_iterative_rounds_only_shrink_the_mask():
    # An iterative (non-FORCE) method's final mask lies inside the mask of fewer rounds' first step:
    # run 2 rounds with a linear schedule and compare with round one's own target.
    net, data = small_cnn(), batches()
    final = prune(net, "iterative_snip", sparsity=0.9, batches=data, iterations=2, schedule="linear")
    first = prune(net, "iterative_snip", sparsity=0.45, batches=data, iterations=1)
    assert all(bool((final[n] <= first[n]).all()) for n in final)


# --- every method x allocation x control ------------------------------------------------------


# phew builds one global mask in one step (covered in test_frontier_methods.py).
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("dense", "phew")])
@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_exact_kept_counts_and_model_untouched(method, allocation):
    net, data = small_cnn(), batches()
    net.train()
    before, mode, grads = snapshot(net)
    sparsity = 0.6
    masks = prune(net, method, sparsity=sparsity, allocation=allocation, batches=data, iterations=3, seed=3)
    params = prunable_parameters(net)
    assert set(masks) == set(params)
    assert all(m.dtype == torch.bool and m.shape == params[n].shape for n, m in masks.items())
    if allocation in ("global", "lamp"):
        assert masks.kept() == round((1 - sparsity) * masks.total())
    else:
        targets = allocate({n: tuple(p.shape) for n, p in params.items()}, sparsity, allocation)
        for name, m in masks.items():
            assert int(m.sum()) == round(targets[name] * m.numel())
    after, mode_after, grads_after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert mode_after == mode and all(g is None for g in grads_after)


@pytest.mark.filterwarnings("ignore:control 'reinit'")  # small_cnn has no reset_parameters (tested below)
@pytest.mark.parametrize("control", CONTROLS)
def test_controls(control):
    net, data = small_cnn(), batches()
    base = prune(net, "snip", sparsity=0.7, allocation="global", batches=data)
    masks = prune(net, "snip", sparsity=0.7, allocation="global", batches=data, control=control, seed=0)
    same_counts = all(int(masks[n].sum()) == int(base[n].sum()) for n in base)
    if control == "none":
        assert all(torch.equal(masks[n], base[n]) for n in base) and masks.weights is None
    elif control == "shuffle":
        assert same_counts and any(not torch.equal(masks[n], base[n]) for n in base)
    elif control == "reinit":
        assert all(torch.equal(masks[n], base[n]) for n in base)
        assert masks.weights is not None and set(masks.weights) == {n for n, _ in net.named_parameters()}
        fresh = masks.weights["0.weight"]
        assert not torch.equal(fresh, net[0].weight)
        target = small_cnn()
        apply_masks(target, masks)
        assert torch.equal(target[0].weight, fresh * masks["0.weight"])
    elif control == "invert":
        assert masks.kept() == base.kept()
        overlap = sum(int((masks[n] & base[n]).sum()) for n in base)
        assert overlap < 0.5 * base.kept()
    else:  # corrupt_labels / corrupt_pixels: scored on corrupted data, so a different mask
        assert masks.kept() == base.kept() and masks.meta["control_applies"]
        assert any(not torch.equal(masks[n], base[n]) for n in base)
        data_free = prune(net, "magnitude", sparsity=0.7, control=control)
        assert not data_free.meta["control_applies"]
        assert mask_hash(data_free) == mask_hash(prune(net, "magnitude", sparsity=0.7))


class _OwnInit(nn.Module):
    """Initialized in __init__ as torchvision's ResNets are: fan-out convs, zeroed norm weight, small head."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 16, 3, bias=False), nn.BatchNorm2d(16), nn.Linear(16, 5)
        self.init_weights()

    def init_weights(self):
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.bn.weight)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class _OwnInitWithReset(_OwnInit):
    def reset_parameters(self):
        self.init_weights()


def test_reinit_records_the_initializer_and_warns_when_the_model_has_none_of_its_own():
    import warnings

    from paitune.models import build_model

    with pytest.warns(UserWarning) as caught:
        layer_defaults = prune(_OwnInit(), "random", sparsity=0.5, control="reinit")
    assert len(caught) == 1 and str(caught[0].message) == (
        "control 'reinit': _OwnInit defines no reset_parameters(), so each layer's PyTorch default initializer "
        "draws the fresh weights, which may differ from the model's own initialization; define "
        "reset_parameters() on the model to re-draw with its initializer"
    )
    assert caught[0].filename == __file__  # points at the call of prune
    assert layer_defaults.meta["reinit_from"] == "each layer's reset_parameters"
    assert float(layer_defaults.weights["bn.weight"].min()) == 1.0  # BatchNorm's default, not the zeros
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        own = prune(_OwnInitWithReset(), "random", sparsity=0.5, control="reinit")
        built = prune(build_model("mlp", (4,), 3, seed=0), "random", sparsity=0.5, control="reinit")
    assert own.meta["reinit_from"] == built.meta["reinit_from"] == "model.reset_parameters"
    assert float(own.weights["bn.weight"].abs().max()) == 0.0 and float(own.weights["fc.weight"].std()) < 0.02
    assert "reinit_from" not in prune(_OwnInit(), "random", sparsity=0.5).meta


def test_corrupt_batches_keep_label_range_and_pixel_multiset():
    from paitune.pruning import corrupt_batches

    data = batches(1)
    labels = corrupt_batches(data, "corrupt_labels", 0)[0]
    assert torch.equal(labels[0], data[0][0]) and int(labels[1].max()) <= int(data[0][1].max())
    assert not torch.equal(labels[1], data[0][1])
    pixels = corrupt_batches(data, "corrupt_pixels", 0)[0]
    assert torch.equal(pixels[1], data[0][1])
    for a, b in zip(pixels[0], data[0][0]):  # each image: same values, other positions
        assert torch.equal(a.reshape(-1).sort().values, b.reshape(-1).sort().values)
    assert not torch.equal(pixels[0], data[0][0])


def test_dense_reference_keeps_everything_at_sparsity_zero_only():
    net = small_cnn()
    masks = prune(net, "dense", sparsity=0.0)
    assert masks.density() == 1.0
    with pytest.raises(PaituneError, match="use sparsity 0"):
        prune(net, "dense", sparsity=0.5)


@pytest.mark.parametrize(
    "choice, refused",
    [
        ({"control": "reinit"}, "use control 'none', got 'reinit'"),
        ({"control": "shuffle"}, "use control 'none', got 'shuffle'"),
        ({"allocation": "erk"}, "use allocation 'global', got 'erk'"),
        ({"allocation": {"0.weight": 1.0}}, "use allocation 'global', got an explicit map"),
        ({"iterations": 5}, "leave iterations unset, got 5"),
    ],
)
def test_dense_refuses_a_choice_it_would_ignore(choice, refused):
    # The unpruned reference has nothing to control, allocate or iterate: such a value would be
    # dropped while the trial is filed with it.
    with pytest.raises(PaituneError) as err:
        prune(small_cnn(), "dense", sparsity=0.0, **choice)
    assert str(err.value) == f"method 'dense' is the unpruned reference: {refused}"


def test_invert_magnitude_keeps_smallest():
    net = two_layer(W1, W2)
    masks = prune(net, "magnitude", sparsity=1 - 2 / 12, control="invert")
    assert masks["0.weight"].tolist() == [[False, False], [True, False], [False, False]]
    assert masks["2.weight"].tolist() == [[False, False, False], [False, True, False]]  # the two 0.1s


def test_random_is_seeded_and_uniform_over_weights():
    net = small_cnn()
    a = prune(net, "random", sparsity=0.9, seed=1)
    b = prune(net, "random", sparsity=0.9, seed=1)
    c = prune(net, "random", sparsity=0.9, seed=2)
    assert mask_hash(a) == mask_hash(b) != mask_hash(c)
    big = nn.Sequential(nn.Linear(100, 200), nn.Linear(200, 100))
    m = prune(big, "random", sparsity=0.75, seed=0)
    densities = m.densities()
    assert all(abs(d - 0.25) < 0.02 for d in densities.values())


# --- allocations ---------------------------------------------------------------------------


SHAPES = {"c1": (16, 3, 3, 3), "c2": (32, 16, 3, 3), "c3": (64, 32, 3, 3), "fc": (10, 64)}


def kept_fraction(shapes, densities):
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    return sum(densities[n] * sizes[n] for n in shapes) / sum(sizes.values())


@pytest.mark.parametrize("scheme", ["uniform", "uniform_plus", "er", "erk", "igq", "smart_ratio"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_allocations_meet_the_sparsity(scheme, sparsity):
    d = allocate(SHAPES, sparsity, scheme)
    assert list(d) == list(SHAPES) and all(0.0 <= v <= 1.0 for v in d.values())
    assert kept_fraction(SHAPES, d) == pytest.approx(1 - sparsity, abs=1e-9)


def test_erk_by_hand():
    shapes = {"a": (4, 2), "b": (8, 4)}  # raw: a = 6/8 = .75, b = 12/32 = .375
    d = allocate(shapes, 0.5, "erk")  # eps (.75*8 + .375*32) = 20 -> eps = 20/18
    assert d["a"] == pytest.approx(0.75 * 20 / 18) and d["b"] == pytest.approx(0.375 * 20 / 18)
    d = allocate(shapes, 0.25, "erk")  # eps = 30/18 -> a would be 1.25: dense, b = (30-8)/32
    assert d["a"] == 1.0 and d["b"] == pytest.approx(22 / 32)


def test_er_ignores_kernel_size():
    shapes = {"a": (4, 2, 3, 3), "b": (8, 4, 3, 3)}  # ER raw = (in+out)/(in*out): a .75, b .375
    d = allocate(shapes, 0.8, "er")
    assert d["a"] / d["b"] == pytest.approx(2.0)


def test_igq_formula():
    d = allocate(SHAPES, 0.8, "igq")
    sizes = {n: math.prod(s) for n, s in SHAPES.items()}
    f = (1 / d["c1"] - 1) / sizes["c1"]
    for name in SHAPES:
        assert d[name] == pytest.approx(1 / (1 + f * sizes[name]), rel=1e-9)
    assert d["c3"] < d["c2"] < d["c1"]


def test_smart_ratio_quadratic_decay_and_linear_30_percent():
    d = allocate(SHAPES, 0.7, "smart_ratio")
    assert d["fc"] == pytest.approx(0.3)
    l_count = 4  # layer l keeps (L-l+1)^2 + (L-l+1): 20, 12, 6 for the convs
    assert d["c1"] / d["c3"] == pytest.approx(20 / 6) or d["c1"] == 1.0
    assert d["c2"] / d["c3"] == pytest.approx(12 / 6)
    assert l_count == len(SHAPES)


def test_smart_ratio_carries_a_capped_layers_excess_forward_as_the_authors_code():
    # c1 216, c2 1152, c3 4608 weights, fc 320 at 30% (96). At sparsity 0.5 the convs share
    # 3148 - 96 = 3052 kept weights in the ratio 20 : 12 : 6, k = 3052 / 45792: c1 would keep
    # 20k = 1.333 of its weights. Su et al.'s SmartRatio caps it at 1 and moves its excess,
    # 0.333 * 216 weights, into c2, which has room for it; c3 keeps its own 6k (ERK's re-solved
    # common scale would raise c3 too).
    shapes = {"c1": (8, 3, 3, 3), "c2": (16, 8, 3, 3), "c3": (32, 16, 3, 3), "fc": (10, 32)}
    k = 3052 / 45792
    d = allocate(shapes, 0.5, "smart_ratio")
    assert d["c1"] == 1.0 and d["fc"] == pytest.approx(0.3)
    assert d["c3"] == pytest.approx(6 * k, rel=1e-12)
    assert d["c2"] == pytest.approx(12 * k + (20 * k - 1) * 216 / 1152, rel=1e-12)
    # When the excess is more than the next layer's room, that layer is made dense and the rest
    # moves on: at sparsity 0.2 only c3 is left below dense.
    d = allocate(shapes, 0.2, "smart_ratio")
    assert d["c1"] == d["c2"] == 1.0 and d["fc"] == pytest.approx(0.3)
    assert d["c3"] == pytest.approx((0.8 * 6296 - 96 - 216 - 1152) / 4608, rel=1e-12)


def test_uniform_plus_first_conv_dense_last_at_least_20_percent():
    d = allocate(SHAPES, 0.9, "uniform_plus")
    assert d["c1"] == 1.0 and d["fc"] >= 0.2 and d["c2"] == d["c3"]


def test_explicit_map():
    mapping = {"c1": 1.0, "c2": 0.5, "c3": 0.1, "fc": 0.3}
    own = 1.0 - kept_fraction(SHAPES, mapping)  # 0.802...
    d = allocate(SHAPES, own, mapping)
    assert d["c3"] == 0.1
    with pytest.raises(PaituneError, match="every prunable layer"):
        allocate(SHAPES, 0.5, {"c1": 1.0})
    net = two_layer(W1, W2)
    masks = prune(net, "magnitude", sparsity=0.25, allocation={"0.weight": 1.0, "2.weight": 0.5})
    assert int(masks["0.weight"].sum()) == 6 and int(masks["2.weight"].sum()) == 3


def test_an_explicit_map_must_remove_the_sparsity_asked():
    """A trial is filed under its sparsity: a map keeping another fraction would put one mask under
    every sparsity of a sweep. Within EXPLICIT_SPARSITY_TOLERANCE the map names its level."""
    mapping = {"0.weight": 1.0, "2.weight": 0.5}  # keeps 9 of 12 weights: sparsity 0.25
    for asked in (0.5, 0.9, 0.2):
        with pytest.raises(PaituneError, match=rf"removes 0.25 of the weights, not the sparsity {asked:g} asked"):
            prune(two_layer(W1, W2), "random", sparsity=asked, allocation=mapping)
    masks = prune(two_layer(W1, W2), "random", sparsity=0.2505, allocation=mapping)
    assert sum(int(m.sum()) for m in masks.values()) == 9


# --- masks in training, reports, interop ------------------------------------------------------


def test_mask_enforcer_keeps_pruned_weights_exactly_zero_under_momentum_and_decay():
    net, data = small_cnn(), batches()
    masks = prune(net, "magnitude", sparsity=0.8)
    apply_masks(net, masks)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    MaskEnforcer(net, masks).attach(opt)
    for x, y in data * 3:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    params = prunable_parameters(net)
    for name, m in masks.items():
        assert bool((params[name][~m] == 0).all())
        assert bool((params[name][m] != 0).any())


def test_report_flops_and_densities_by_hand():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    masks = {
        "0.weight": torch.tensor([[1, 1, 0, 0]] * 3, dtype=torch.bool),
        "2.weight": torch.ones(2, 3, dtype=torch.bool),
    }
    r = mask_report(net, masks, (4,))
    assert r.flops_dense == 2 * (4 * 3 + 3 * 2)
    assert r.flops_sparse == 2 * (6 + 6)
    assert r.params_kept == 12 and r.params_total == 18 and r.density == pytest.approx(12 / 18)
    assert not r.collapsed
    assert count_flops(net, (4,), masks) == r.flops_sparse


class _Attention(nn.Module):
    """Tokens of 8 features -> 16-wide attention (2 heads) -> mean -> 3 classes."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.emb, self.head = nn.Linear(8, 16), nn.Linear(16, 3)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=batch_first)

    def forward(self, x):  # x: (batch, tokens, 8)
        h = self.emb(x) if self.batch_first else self.emb(x).transpose(0, 1)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(a.mean(1 if self.batch_first else 0))


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_flops_by_hand_and_out_proj_scaled_by_its_density(batch_first):
    # 5 tokens of width E = 16, 2 heads of 8: every matmul counted, 2 FLOPs per multiply-add.
    net = _Attention(batch_first).eval()  # eval: MultiheadAttention's fused fast path applies
    tokens, e = 5, 16
    attention = 2 * tokens * e * 3 * e + 2 * (2 * 2 * tokens * tokens * 8) + 2 * tokens * e * e
    dense = 2 * tokens * 8 * e + attention + 2 * e * 3
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(net).items()}
    assert "attn.out_proj.weight" in masks  # in_proj_weight is not a Conv/Linear weight: dense
    masks["attn.out_proj.weight"][:, 4:] = False  # density 0.25
    r = mask_report(net, masks, (tokens, 8))
    assert r.flops_dense == dense
    assert r.flops_sparse == dense - 0.75 * (2 * tokens * e * e)
    assert count_flops(net, (tokens, 8), masks) == r.flops_sparse
    assert torch.backends.mha.get_fastpath_enabled()  # the setting is restored


def test_collapse_empty_layer_and_disconnection_without_empty_layer():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    empty = {"0.weight": torch.zeros(2, 2, dtype=torch.bool), "2.weight": torch.ones(2, 2, dtype=torch.bool)}
    r = mask_report(net, empty, (2,))
    assert r.collapsed and r.collapsed_layers == ["0.weight"] and r.disconnected
    # layer 1 feeds only hidden unit 0, layer 2 reads only hidden unit 1: no path, no empty layer
    cut = {
        "0.weight": torch.tensor([[1, 1], [0, 0]], dtype=torch.bool),
        "2.weight": torch.tensor([[0, 1], [0, 1]], dtype=torch.bool),
    }
    r = mask_report(net, cut, (2,))
    assert r.collapsed_layers == [] and r.disconnected and r.collapsed
    ok = {
        "0.weight": torch.tensor([[1, 0], [0, 0]], dtype=torch.bool),
        "2.weight": torch.tensor([[1, 0], [0, 0]], dtype=torch.bool),
    }
    assert has_input_output_path(net, ok, (2,))


class _LayerNormMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.ln, self.l2 = nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.l2(F.relu(self.ln(self.l1(x))))


class _GroupNormCnn(nn.Module):
    def __init__(self, norm=None):
        super().__init__()
        self.c, self.norm, self.fc = nn.Conv2d(3, 4, 1), norm or nn.GroupNorm(2, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.relu(self.norm(self.c(x))).mean((2, 3)))


@pytest.mark.parametrize(
    "net, shape",
    [
        (_LayerNormMlp(), (4,)),
        (_GroupNormCnn(), (3, 5, 5)),
        (_GroupNormCnn(nn.InstanceNorm2d(4, affine=True)), (3, 5, 5)),
        (_GroupNormCnn(nn.BatchNorm2d(4, track_running_stats=False)), (3, 1, 1)),  # one value per channel
    ],
)
def test_collapse_probe_takes_every_norm_layer_as_the_identity(net, shape):
    # The probe's constant features normalize to 0 in layer / group / instance norm: every norm
    # layer is the identity in the probe, so an unpruned model is connected and a cut one is not.
    dense = full_masks(net)
    report = mask_report(net, dense, shape)
    assert has_input_output_path(net, dense, shape) and not report.disconnected and not report.collapsed
    first = next(iter(dense))
    cut = {**dense, first: torch.zeros_like(dense[first])}
    assert not has_input_output_path(net, cut, shape) and mask_report(net, cut, shape).disconnected


def test_torch_prune_interop_round_trip():
    net = small_cnn()
    masks = prune(net, "magnitude", sparsity=0.5)
    to_torch_prune(net, masks)
    back = from_torch_prune(net)
    assert set(back) == set(masks) and all(torch.equal(back[n], masks[n]) for n in masks)
    assert bool((net[0].weight[~masks["0.weight"]] == 0).all())
    # Pruned that way, a layer's weight is computed on each forward, not a parameter: pruning the
    # model again is refused rather than scoring without that layer.
    with pytest.raises(PaituneError, match=r"layer '0' is already pruned with torch.nn.utils.prune"):
        prune(net, "magnitude", sparsity=0.5)


class _Tied(nn.Module):
    """b.weight is a.weight: masks name it a.weight, and it works in both layers."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False), nn.Linear(6, 3)
        self.b.weight = self.a.weight
        self.input_shape = (6,)

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.a(x)))))


class _TiedEmbedding(nn.Module):
    """A language-model tie: the output Linear's weight is the Embedding's (masks name it emb.weight)."""

    def __init__(self):
        super().__init__()
        self.emb, self.mid, self.head = nn.Embedding(12, 8), nn.Linear(8, 8), nn.Linear(8, 12, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(F.relu(self.mid(self.emb(tokens)))).mean(1)


@pytest.mark.parametrize("build, x", [(_Tied, torch.randn(4, 6)), (_TiedEmbedding, torch.randint(0, 12, (4, 5)))])
def test_torch_prune_interop_masks_every_module_of_a_tied_weight(build, x):
    torch.manual_seed(0)
    net = build()
    masks = prune(net, "magnitude", sparsity=0.7)
    applied, hooked = copy.deepcopy(net), copy.deepcopy(net)
    apply_masks(applied, masks)
    to_torch_prune(hooked, masks)
    torch.testing.assert_close(hooked(x), applied(x))
    back = from_torch_prune(hooked)
    assert set(back) == set(masks) and all(torch.equal(back[n], masks[n]) for n in masks)


def test_sparse_flops_scale_every_layer_of_a_tied_weight():
    from paitune.proxies import compute_proxies

    torch.manual_seed(0)
    net = _Tied()
    masks = prune(net, "magnitude", sparsity=0.9)
    density, head = masks.densities()["a.weight"], masks.densities()["out.weight"]
    by_hand = 2 * 36 * density * 2 + 2 * 18 * head  # layers a and b use the weight, then the head
    report = mask_report(net, masks)
    assert report.flops_dense == 2 * 36 * 2 + 2 * 18
    assert report.flops_sparse == count_flops(net, (6,), masks) == round(by_hand)
    assert [layer.flops_dense for layer in report.layers] == [2 * 36 * 2, 2 * 18]
    batch = (torch.randn(4, 6), torch.randint(0, 3, (4,)))
    assert compute_proxies(net, batch, ["flops"], masks=masks)["flops"] == pytest.approx(report.flops_sparse, abs=1)


def test_a_parametrized_weight_is_refused_rather_than_left_out_of_the_mask():
    from torch.nn.utils import parametrize

    class Scale(nn.Module):
        def forward(self, w):
            return 2 * w

    net = small_cnn()
    parametrize.register_parametrization(net[0], "weight", Scale())
    with pytest.raises(PaituneError, match="parametrize"):
        prune(net, "snip", sparsity=0.5, batches=batches())


def _weight_normed():
    net = small_cnn()
    net[7] = torch.nn.utils.weight_norm(net[7])  # weight = g * v / ||v||, recomputed on each forward
    return net


def _spectral_normed():
    net = small_cnn()
    net[7] = torch.nn.utils.spectral_norm(net[7])  # weight = weight_orig / sigma, recomputed on each forward
    return net


def _lazy():
    net = small_cnn()
    net[7] = nn.LazyLinear(20)  # no weight until the first forward
    return net


def _computed_weight():
    net = small_cnn()
    weight = net[7].weight.detach().clone()
    del net[7].weight
    net[7].weight = weight  # a plain tensor attribute, no parameter of the layer
    return net


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates weight_norm (not its use here)
@pytest.mark.parametrize(
    "build, message",
    [
        (_weight_normed, "layer '7' has a torch.nn.utils.weight_norm weight (computed from weight_g and weight_v on "
         "each forward): call torch.nn.utils.remove_weight_norm on it before pruning"),
        (_spectral_normed, "layer '7' has a torch.nn.utils.spectral_norm weight (computed from weight_orig on each "
         "forward): call torch.nn.utils.remove_spectral_norm on it before pruning"),
        (_lazy, "layer '7' is a lazy module whose weight is not initialized yet: run one forward pass of the model first"),
        (_computed_weight, "layer '7' has a weight that is not an nn.Parameter registered on the layer (a Tensor "
         "computed elsewhere): make it the layer's own parameter before pruning"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("method", ["magnitude", "snip"])
def test_a_weight_that_is_no_plain_parameter_is_refused_with_its_fix(build, message, method):
    with pytest.raises(PaituneError) as err:
        prune(build(), method, sparsity=0.5, batches=batches(1))
    assert str(err.value) == message


@pytest.mark.parametrize(
    "transposed", [nn.ConvTranspose1d(6, 6, 1), nn.ConvTranspose2d(6, 6, 1), nn.ConvTranspose3d(6, 6, 1)]
)
def test_a_transposed_convolution_is_refused_rather_than_left_dense_and_uncounted(transposed):
    net = small_cnn()
    net[2] = nn.Sequential(nn.ReLU(), transposed)
    with pytest.raises(PaituneError) as err:
        prune(net, "magnitude", sparsity=0.9)
    kind = type(transposed).__name__
    assert str(err.value) == (
        f"layer '2.1' is a {kind}, which paitune cannot prune (prunable weights are those of Conv1d/2d/3d and "
        "Linear layers): use a model without transposed convolutions"
    )


class _TwoOutputs(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind, self.body, self.head = kind, nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        logits = self.head(F.relu(self.body(x)))
        return (logits, logits.sum()) if self.kind == "tuple" else {"logits": logits}


@pytest.mark.parametrize("kind", ["tuple", "dict"])
@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "force", "prospr", "ntk_sap", "px", "report"])
def test_a_forward_that_returns_no_single_tensor_is_one_clear_error(kind, method):
    net, data = _TwoOutputs(kind), [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    with pytest.raises(PaituneError) as err:
        if method == "report":
            mask_report(net, full_masks(net), (4,))
        else:
            prune(net, method, sparsity=0.5, batches=data, iterations=1 if method in DEFAULT_ITERATIONS else None)
    assert str(err.value) == f"the model's forward must return one Tensor of logits; it returned {kind}"


# --- module copies ----------------------------------------------------------------------------


def test_copy_module_equals_deepcopy_and_shares_nothing_with_the_original():
    from paitune.models import copy_module

    shared = nn.Linear(3, 3)
    net = nn.Sequential(shared, nn.BatchNorm1d(3), nn.ReLU(), shared, nn.Linear(3, 2))
    net[4].weight = nn.Parameter(torch.randn(2, 3))
    net.tag = {"kept": [1, 2]}
    calls = []
    net[2].register_forward_hook(lambda module, inputs, output: calls.append(1))
    copied, reference = copy_module(net), copy.deepcopy(net)
    for left, right in zip(copied.modules(), reference.modules()):
        assert type(left) is type(right) and vars(left).keys() == vars(right).keys()
    assert copied[0] is copied[3] and copied[0] is not shared  # sharing kept, nothing aliased
    assert copied.tag == net.tag and copied.tag is not net.tag
    for (name, p), q in zip(copied.state_dict().items(), net.state_dict().values()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    copied(torch.randn(4, 3))
    assert calls == [1]  # hooks are copied along
    copied[0].register_forward_hook(lambda *args: calls.append(2))
    copied[1].register_buffer("extra", torch.zeros(1), persistent=False)
    assert not shared._forward_hooks and "extra" not in net[1]._non_persistent_buffers_set
    net(torch.randn(4, 3))
    assert calls == [1, 1]


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="bogus", sparsity=0.5), "unknown pruning method 'bogus'; choose one of"),
        (dict(method="random", sparsity=1.0), "sparsity must be in"),
        (dict(method="random", sparsity=-0.1), "sparsity must be in"),
        (dict(method="random", sparsity=float("nan")), "sparsity must be in"),
        (dict(method="random", sparsity=0.5, allocation="nope"), "unknown allocation 'nope'"),
        (dict(method="random", sparsity=0.5, control="nope"), "unknown control 'nope'"),
        (dict(method="random", sparsity=0.5, schedule="cubic"), "unknown schedule"),
        (dict(method="snip", sparsity=0.5), "scores with data"),
        (dict(method="synflow", sparsity=0.5, iterations=0), "iterations must be a positive integer"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(PaituneError, match=message.replace("(", r"\(")) as err:
        prune(small_cnn(), **kwargs)
    assert "\n" not in str(err.value)


def test_registries_refuse_a_second_registration_and_a_contradictory_spec():
    from paitune.pruning import AllocationSpec, ControlSpec, allocation_names, register_allocation, register_control
    from paitune.pruning.scores import lamp_scores

    before = allocation_names()
    with pytest.raises(ValueError, match="registered twice"):
        register_allocation(AllocationSpec("erk", densities=lambda shapes, sparsity: {}))
    with pytest.raises(ValueError, match="registered twice"):
        register_control(ControlSpec("shuffle"))
    with pytest.raises(ValueError, match="no scores to normalize"):
        register_allocation(AllocationSpec("fixed_and_ranked", densities=lambda sh, sp: {}, normalize=lamp_scores))
    assert allocation_names() == before


def test_registered_facts_of_the_built_ins():
    from paitune.pruning import allocation_spec, control_names, control_spec

    assert [n for n in ALLOCATIONS if allocation_spec(n).ranks_scores] == ["global", "lamp"]
    assert [n for n in control_names() if control_spec(n).changes_data] == ["corrupt_labels", "corrupt_pixels"]
    assert [n for n in control_names() if control_spec(n).needs_scores] == ["invert"]
    assert all(control_spec(n).if_hurts and control_spec(n).if_not for n in CONTROLS if n != "none")


def test_a_purpose_without_a_listed_salt_gets_a_fixed_one_of_its_own():
    from paitune.pruning.seeds import SALTS, derived_seed

    assert derived_seed(7, "mirror") == derived_seed(7, "mirror") != derived_seed(7, "mirror2")
    assert derived_seed(7, "mirror") not in {derived_seed(7, purpose) for purpose in SALTS}
    assert derived_seed(7, "shuffle") == 7 * 1_000_003 + 1


@pytest.mark.slow
def test_layer_collapse_vgg16_magnitude_collapses_synflow_does_not():
    """Tanaka et al.: VGG-16 at density 1e-3, global magnitude empties layers, SynFlow (100 rounds) does not."""
    from paitune.models import build_model

    torch.set_num_threads(2)
    model = build_model("vgg16", (3, 8, 8), 10, seed=0)  # 8x8 inputs: same weights, cheaper SynFlow passes
    magnitude = mask_report(model, prune(model, "magnitude", sparsity=0.999))
    synflow = mask_report(model, prune(model, "synflow", sparsity=0.999))
    assert magnitude.collapsed and magnitude.collapsed_layers
    assert not synflow.collapsed and all(layer.kept > 0 for layer in synflow.layers)
    assert synflow.density == pytest.approx(1e-3, rel=1e-3)
