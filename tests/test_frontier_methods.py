"""ProsPr, NTK-SAP, PHEW and PX against hand-checked cases and independent re-computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paitune.errors import PaituneError
from paitune.models import build_model
from paitune.pruning import DATA_METHODS, DEFAULT_ITERATIONS, METHODS, has_input_output_path, mask_hash, prune
from paitune.pruning.layers import prunable_parameters
from paitune.pruning.phew import phew_masks
from paitune.pruning.prospr import prospr_scores
from paitune.pruning.px import PxScorer
from paitune.pruning.registry import ScoringInputs
from paitune.pruning.scores import ScoringCopy, snip_scores

FRONTIER = ("prospr", "ntk_sap", "phew", "px")
FEW_ROUNDS = {"prospr": None, "ntk_sap": 2, "phew": None, "px": 2}


def batch(shape, n=16, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g))


def small_mlp(seed=0, bias=True, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6, bias=bias), nn.ReLU(), nn.Linear(6, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3))
    net.input_shape = (5,)
    return net.to(dtype)


def test_registry_names_and_defaults():
    assert METHODS[-4:] == FRONTIER
    assert {"prospr", "px"} <= set(DATA_METHODS) and not {"ntk_sap", "phew"} & set(DATA_METHODS)
    assert DEFAULT_ITERATIONS["ntk_sap"] == 20 and DEFAULT_ITERATIONS["px"] == 100
    assert "prospr" not in DEFAULT_ITERATIONS and "phew" not in DEFAULT_ITERATIONS


@pytest.mark.parametrize("method", FRONTIER)
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.98])
def test_exact_kept_count_and_model_untouched(method, sparsity):
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    before = copy.deepcopy(model.state_dict())
    masks = prune(model, method, sparsity=sparsity, batches=[batch((1, 8, 8))], iterations=FEW_ROUNDS[method])
    assert masks.kept() == round((1 - sparsity) * masks.total())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("method", ["prospr", "ntk_sap", "px"])
@pytest.mark.parametrize("allocation", ["uniform", "erk", "lamp"])
def test_fixed_allocations_keep_each_layer_count(method, allocation):
    model = build_model("mlp", (1, 8, 8), 10, seed=1)
    masks = prune(model, method, sparsity=0.9, allocation=allocation, batches=[batch((1, 8, 8))], iterations=2)
    assert masks.kept() == round(0.1 * masks.total())
    if allocation == "uniform":
        for name, m in masks.items():
            assert int(m.sum()) == round(0.1 * m.numel()), name


@pytest.mark.parametrize("method", FRONTIER)
def test_deterministic_given_seed(method):
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    args = dict(sparsity=0.95, batches=[batch((1, 8, 8))], iterations=FEW_ROUNDS[method], seed=3)
    assert mask_hash(prune(model, method, **args)) == mask_hash(prune(model, method, **args))


@pytest.mark.parametrize("method", ["ntk_sap", "phew"])
def test_seed_matters_for_the_random_methods(method):
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    args = dict(sparsity=0.95, iterations=FEW_ROUNDS[method])
    assert mask_hash(prune(model, method, seed=0, **args)) != mask_hash(prune(model, method, seed=1, **args))


# --- ProsPr ---------------------------------------------------------------------------------------


def test_prospr_with_zero_steps_is_snip_bit_for_bit():
    model = build_model("cnn", (1, 8, 8), 10, seed=2)
    b = batch((1, 8, 8), n=32)
    snip = snip_scores(ScoringCopy(model), None, [b])
    options = {"inner_steps": 0, "inner_lr": 0.1, "inner_momentum": 0.0, "meta_grads": "full"}
    prospr = prospr_scores(ScoringCopy(model), None, b, options)
    for name in snip:
        assert torch.equal(snip[name], prospr[name]), name
    a = prune(model, "snip", sparsity=0.9, batches=[b])
    c = prune(model, "prospr", sparsity=0.9, batches=[b], method_options={"inner_steps": 0})
    assert mask_hash(a) == mask_hash(c)


def test_prospr_first_order_is_the_gradient_after_plain_sgd_steps():
    """First-order meta-gradients: d theta_K / dm = w, so the score is |grad L(theta_K) * w|, with
    theta_K from torch.optim.SGD's own steps (momentum, no dampening or weight decay)."""
    model = small_mlp(seed=4)
    x, y = batch((5,), n=8, classes=3)
    options = {"inner_steps": 3, "inner_lr": 0.2, "inner_momentum": 0.9, "meta_grads": "first_order"}
    scores = prospr_scores(ScoringCopy(model), None, (x, y), options)
    net = copy.deepcopy(model).train()
    w0 = {n: p.detach().clone() for n, p in prunable_parameters(net).items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    for name, p in prunable_parameters(net).items():
        torch.testing.assert_close(scores[name].float(), (p.grad * w0[name]).abs(), rtol=1e-5, atol=1e-7)


def test_prospr_full_meta_gradient_matches_finite_differences():
    model = small_mlp(seed=5, dtype=torch.float64)
    x, y = batch((5,), n=8, classes=3)
    x = x.double()
    options = {"inner_steps": 2, "inner_lr": 0.3, "inner_momentum": 0.5, "meta_grads": "full"}
    scores = prospr_scores(ScoringCopy(model), None, (x, y), options)

    def meta_loss(name, index, delta):
        net = copy.deepcopy(model).train()
        with torch.no_grad():
            dict(net.named_parameters())[name].view(-1)[index] *= 1 + delta  # m = 1 + delta
        opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.5)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        return F.cross_entropy(net(x), y).item()

    for name in ("0.weight", "4.weight"):
        for index in (0, 5):
            h = 1e-6
            numeric = (meta_loss(name, index, h) - meta_loss(name, index, -h)) / (2 * h)
            assert scores[name].view(-1)[index].item() == pytest.approx(abs(numeric), rel=1e-4, abs=1e-9)


def test_prospr_reads_only_the_first_batch():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    one = prune(model, "prospr", sparsity=0.9, batches=[batch((1, 8, 8), seed=1)])
    two = prune(model, "prospr", sparsity=0.9, batches=[batch((1, 8, 8), seed=1), batch((1, 8, 8), seed=2)])
    assert mask_hash(one) == mask_hash(two)


# --- NTK-SAP --------------------------------------------------------------------------------------


def test_ntk_sap_is_data_free_and_weight_agnostic():
    a = build_model("cnn", (1, 8, 8), 10, seed=0)
    b = build_model("cnn", (1, 8, 8), 10, seed=7)  # same architecture, other weights
    args = dict(sparsity=0.95, iterations=2, seed=1)
    base = prune(a, "ntk_sap", batches=[batch((1, 8, 8), seed=0)], **args)
    assert mask_hash(prune(b, "ntk_sap", batches=[batch((1, 8, 8), seed=0)], **args)) == mask_hash(base)
    assert mask_hash(prune(a, "ntk_sap", batches=[batch((1, 8, 8), seed=9)], **args)) == mask_hash(base)
    for control in ("corrupt_labels", "corrupt_pixels"):
        masks = prune(a, "ntk_sap", batches=[batch((1, 8, 8), seed=0)], control=control, **args)
        assert mask_hash(masks) == mask_hash(base) and not masks.meta["control_applies"]


def test_ntk_sap_without_batches_uses_the_input_shape():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    masks = prune(model, "ntk_sap", sparsity=0.9, iterations=1, method_options={"epsilon": 0.05, "resamples": 2})
    assert masks.kept() == round(0.1 * masks.total())
    assert masks.meta["method_options"] == {"epsilon": 0.05, "resamples": 2}


def test_ntk_sap_scores_only_alive_weights_and_keeps_exact_counts_per_round():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    final = prune(model, "ntk_sap", sparsity=0.99, iterations=5)
    assert final.kept() == round(0.01 * final.total())
    # No revival: every kept weight was kept at the coarser first-round target too.
    coarse = prune(model, "ntk_sap", sparsity=1 - 0.01 ** (1 / 5), iterations=1)
    assert all(bool((final[n] <= coarse[n]).all()) for n in final)


# --- PHEW -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("resnet20", (3, 8, 8))])
def test_phew_keeps_a_path_and_every_layer_at_98_percent(name, shape):
    model = build_model(name, shape, 10, seed=0)
    masks = prune(model, "phew", sparsity=0.98)
    assert masks.kept() == round(0.02 * masks.total())
    assert all(int(m.sum()) > 0 for m in masks.values())
    assert has_input_output_path(model, masks, shape)


def test_phew_is_data_free():
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    base = prune(model, "phew", sparsity=0.9, batches=[batch((1, 8, 8), seed=0)])
    assert mask_hash(prune(model, "phew", sparsity=0.9)) == mask_hash(base)
    assert mask_hash(prune(model, "phew", sparsity=0.9, batches=[batch((1, 8, 8), seed=5)])) == mask_hash(base)
    for control in ("corrupt_labels", "corrupt_pixels"):
        masks = prune(model, "phew", sparsity=0.9, batches=[batch((1, 8, 8))], control=control)
        assert mask_hash(masks) == mask_hash(base) and not masks.meta["control_applies"]


def test_phew_walks_start_from_the_end_units_in_turn():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    weights = prunable_parameters(model)
    layers = len(weights)
    first, last = list(weights)[0], list(weights)[-1]
    for k in (3, 30, 200):
        masks = phew_masks(dict(weights), k, seed=0)
        walks = math.ceil(k / layers)
        forward, backward = math.ceil(walks / 2), walks // 2
        assert sum(int(m.sum()) for m in masks.values()) == k
        assert bool(masks[first].any(dim=0)[:forward].all())
        assert bool(masks[last].any(dim=1)[:backward].all())
        if k >= layers:
            assert all(bool(m.any()) for m in masks.values())


def test_phew_prefers_large_weights():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    masks = prune(model, "phew", sparsity=0.9)
    for name, w in prunable_parameters(model).items():
        kept = w.detach().abs()[masks[name]].mean()
        assert kept > 1.1 * w.detach().abs().mean(), name


def test_phew_flatten_maps_channels_to_their_features():
    """Conv(1->2) then Linear(2*4 -> 3): channel c feeds features 4c..4c+3 only."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))  # only channel 0 is reachable forward
    masks = phew_masks(dict(prunable_parameters(net)), 2, seed=0)  # one forward walk
    assert bool(masks["0.weight"].view(-1)[0]) and int(masks["2.weight"][:, :4].sum()) == 1


def test_phew_refuses_other_allocations_invert_and_rounds():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    for kwargs in ({"allocation": "erk"}, {"allocation": "lamp"}, {"allocation": {"layers.1.weight": 0.5}}):
        with pytest.raises(PaituneError, match="global"):
            prune(model, "phew", sparsity=0.9, **kwargs)
    with pytest.raises(PaituneError, match="invert"):
        prune(model, "phew", sparsity=0.9, control="invert")
    with pytest.raises(PaituneError, match="one step"):
        prune(model, "phew", sparsity=0.9, iterations=5)
    shuffled = prune(model, "phew", sparsity=0.9, control="shuffle")
    plain = prune(model, "phew", sparsity=0.9)
    assert shuffled.densities() == plain.densities() and mask_hash(shuffled) != mask_hash(plain)
    reinit = prune(model, "phew", sparsity=0.9, control="reinit")
    assert mask_hash(reinit) == mask_hash(plain) and reinit.weights is not None


# --- PX -------------------------------------------------------------------------------------------


def test_px_matches_the_closed_form_of_a_one_hidden_layer_net():
    """f = W2 relu(W1 x), no biases. J: z1 = W2 (g * (1 x^2)); K: z2 = W2 (W1^2 1); R = sum z1 z2."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    g = (x @ w1.T > 0).double()  # (batch, hidden)
    s = (x * x).sum(1, keepdim=True)  # (batch, 1): the all-ones J layer sums x^2
    z1 = (g * s) @ w2.T  # (batch, classes)
    h2 = (w1**2).sum(1)  # K's hidden units: W1^2 times ones
    grad_p1 = ((z1 @ w2).sum(0))[:, None].expand_as(w1)  # dR/dP1[j, i] = sum_b sum_c z1_bc W2_cj
    grad_w2 = z1.sum(0)[:, None] * h2[None, :]  # z1 is a constant: only K's classifier is p
    inputs = ScoringInputs(net, [(x, torch.zeros(6, dtype=torch.long))], (4,), 0, {})
    scores = PxScorer(inputs)(None)
    torch.testing.assert_close(scores["0.weight"], grad_p1.abs() * w1**2)
    torch.testing.assert_close(scores["2.weight"], grad_w2.abs() * w2**2)


class _TiedHidden(nn.Module):
    """Two hidden layers sharing one weight (b.weight is a.weight), each with its own bias."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.b.weight = self.a.weight
        with torch.no_grad():
            self.a.bias.uniform_(0.5, 1.5)
            self.b.bias.uniform_(-1.5, -0.5)

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.a(x)))))


def test_px_sets_the_bias_of_every_layer_a_tied_weight_serves():
    """J gives every layer but the classifier bias 1 and K bias b^2: a.bias as well as b.bias."""
    torch.manual_seed(0)
    net = _TiedHidden().double()
    x = torch.randn(5, 6, dtype=torch.float64)
    w, ba, bb = net.a.weight.detach(), net.a.bias.detach(), net.b.bias.detach()
    wo, bo = net.out.weight.detach(), net.out.bias.detach()
    ga = (x @ w.T + ba > 0).double()
    gb = (F.relu(x @ w.T + ba) @ w.T + bb > 0).double()
    ones = torch.ones_like(w)
    z1 = ((((x * x) @ ones.T + 1) * ga) @ ones.T + 1) * gb @ wo.T + bo
    p, pc = (w**2).requires_grad_(True), wo.clone().requires_grad_(True)
    z2 = ((torch.ones_like(x) @ p.T + ba**2) @ p.T + bb**2) @ pc.T + bo
    gp, gc = torch.autograd.grad((z1 * z2).sum(), [p, pc])
    scores = PxScorer(ScoringInputs(net, [(x, torch.zeros(5, dtype=torch.long))], (6,), 0, {}))(None)
    assert set(scores) == {"a.weight", "out.weight"}
    torch.testing.assert_close(scores["a.weight"], gp.abs() * w**2)
    torch.testing.assert_close(scores["out.weight"], gc.abs() * wo**2)


def test_px_reads_inputs_not_labels():
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    b = [batch((1, 8, 8))]
    base = prune(model, "px", sparsity=0.95, batches=b, iterations=2)
    labels = prune(model, "px", sparsity=0.95, batches=b, iterations=2, control="corrupt_labels")
    pixels = prune(model, "px", sparsity=0.95, batches=b, iterations=2, control="corrupt_pixels")
    assert mask_hash(labels) == mask_hash(base)
    assert mask_hash(pixels) != mask_hash(base)


def test_px_sees_functional_relus():
    """resnet20 applies F.relu: its gates must reach PX (otherwise the all-ones J would ignore the data)."""
    model = build_model("resnet20", (3, 8, 8), 10, seed=0)
    a = prune(model, "px", sparsity=0.9, batches=[batch((3, 8, 8), seed=0)], iterations=1)
    b = prune(model, "px", sparsity=0.9, batches=[batch((3, 8, 8), seed=1)], iterations=1)
    assert mask_hash(a) != mask_hash(b)


# --- options and models ---------------------------------------------------------------------------


def test_method_options_are_validated():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    b = [batch((1, 8, 8))]
    with pytest.raises(PaituneError, match="inner_steps, inner_lr, inner_momentum, meta_grads"):
        prune(model, "prospr", sparsity=0.9, batches=b, method_options={"steps": 2})
    with pytest.raises(PaituneError, match="options: none"):
        prune(model, "snip", sparsity=0.9, batches=b, method_options={"inner_steps": 2})
    with pytest.raises(PaituneError, match="integer"):
        prune(model, "prospr", sparsity=0.9, batches=b, method_options={"inner_steps": 1.5})
    with pytest.raises(PaituneError, match="first_order"):
        prune(model, "prospr", sparsity=0.9, batches=b, method_options={"meta_grads": "second"})
    with pytest.raises(PaituneError, match="> 0"):
        prune(model, "ntk_sap", sparsity=0.9, method_options={"epsilon": 0})
    with pytest.raises(PaituneError, match="finite"):
        prune(model, "ntk_sap", sparsity=0.9, method_options={"epsilon": float("inf")})
    with pytest.raises(PaituneError, match="batches"):
        prune(model, "px", sparsity=0.9)
    import numpy as np  # a value read from a table: NumPy's integer is an integer

    numpy_int = prune(model, "prospr", sparsity=0.9, batches=b, method_options={"inner_steps": np.int64(2)})
    assert numpy_int.meta["method_options"]["inner_steps"] == 2
    for not_a_mapping in ("inner_steps=2", 3, [("inner_steps", 2)]):
        with pytest.raises(PaituneError, match="method_options must be a mapping"):
            prune(model, "prospr", sparsity=0.9, batches=b, method_options=not_a_mapping)
    # Checked like every trial option: numbers are numbers ("1" is text), 1.0 is a whole number.
    with pytest.raises(PaituneError, match="inner_steps must be an integer"):
        prune(model, "prospr", sparsity=0.9, batches=b, method_options={"inner_steps": "1"})
    masks = prune(model, "prospr", sparsity=0.9, batches=b, method_options={"inner_steps": 1.0})
    assert masks.meta["method_options"]["inner_steps"] == 1 and isinstance(
        masks.meta["method_options"]["inner_steps"], int
    )
    assert "method_options" not in prune(model, "snip", sparsity=0.9, batches=b).meta


@pytest.mark.parametrize("method", FRONTIER)
@pytest.mark.parametrize(
    "name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("resnet20", (3, 8, 8)), ("vgg11", (3, 8, 8))]
)
def test_each_method_on_each_model(method, name, shape):
    model = build_model(name, shape, 10, seed=0)
    control = "reinit" if name == "cnn" else "shuffle" if name == "mlp" else "none"
    masks = prune(
        model, method, sparsity=0.95, batches=[batch(shape, n=8)], iterations=1 if method != "phew" else None,
        control=control,
    )  # fmt: skip
    assert masks.kept() == round(0.05 * masks.total())
    assert set(masks) == set(prunable_parameters(model))


def test_check_choices_applies_prunes_rules_without_a_model():
    from paitune.pruning import check_choices

    assert check_choices("ntk_sap", method_options={"resamples": 5}) == {"epsilon": 0.01, "resamples": 5}
    assert check_choices("snip") == {}
    with pytest.raises(PaituneError, match="global"):
        check_choices("phew", allocation="erk")
    with pytest.raises(PaituneError, match="invert"):
        check_choices("phew", control="invert")
    with pytest.raises(PaituneError, match="unknown pruning method"):
        check_choices("prospr2")


def test_rescoring_the_same_mask_gives_the_same_scores():
    """Later rounds rescore on the same scratch copies: the train-mode passes of PX's J and K and
    ProsPr's steps must leave nothing behind (PX's gates read the model's own running statistics)."""
    model = build_model("resnet20", (3, 8, 8), 10, seed=0)
    b = [batch((3, 8, 8), n=8)]
    px = PxScorer(ScoringInputs(model, b, (3, 8, 8), 0, {}))
    first, second = px(None), px(None)
    assert all(torch.equal(first[n], second[n]) for n in first)
    options = {"inner_steps": 2, "inner_lr": 0.1, "inner_momentum": 0.9, "meta_grads": "full"}
    scratch = ScoringCopy(model)
    first, second = prospr_scores(scratch, None, b[0], options), prospr_scores(scratch, None, b[0], options)
    assert all(torch.equal(first[n], second[n]) for n in first)


@pytest.mark.parametrize("method", ["snip", "prospr", "px"])
def test_dropout_in_scoring_follows_prunes_seed_not_the_callers_generator(method):
    """A train-mode scoring pass runs the model's dropout on torch's global generator: the mask
    must follow ``prune``'s seed alone, and the caller's stream must not move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
    b = [batch((1, 8, 8))]
    hashes = set()
    for caller_seed in (1, 2, 3):
        torch.manual_seed(caller_seed)
        expected_next = torch.rand(1)
        torch.manual_seed(caller_seed)
        hashes.add(
            mask_hash(prune(model, method, sparsity=0.9, batches=b, iterations=2 if method == "px" else None, seed=5))
        )
        assert torch.rand(1) == expected_next  # the caller's stream is where it was
    assert len(hashes) == 1
    other = mask_hash(prune(model, method, sparsity=0.9, batches=b, iterations=2 if method == "px" else None, seed=6))
    assert other not in hashes  # the seed still matters
