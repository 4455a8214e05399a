"""Zero-cost proxies: hand-derived values on tiny nets, masks, invariants, errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from paitune.errors import PaituneError
from paitune.proxies import PROXIES, compute_proxies
from paitune.proxies.jacob_cov import jacob_cov_score

torch.set_num_threads(1)

EPS = 1e-5  # jacob_cov's eigenvalue offset


# --- tiny networks with known weights ---------------------------------------------------------


def one_layer_net() -> nn.Linear:
    """Linear(4 -> 3) with fixed weights of both signs."""
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(
            torch.tensor(
                [[0.5, -1.0, 0.25, 2.0], [-0.75, 0.5, 1.5, -0.25], [1.0, 0.1, -0.5, 0.3]],
                dtype=torch.float64,
            )
        )
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64))
    return layer.double()


def one_layer_batch():
    x = torch.tensor(
        [[1.0, 0.0, -1.0, 0.5], [0.2, -0.3, 0.8, 1.0], [-1.5, 0.7, 0.1, -0.2]],
        dtype=torch.float64,
    )
    return x, torch.tensor([0, 2, 1])


def small_cnn(*, dropout: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(54, 10),
    ]
    if dropout:
        layers.insert(-1, nn.Dropout(0.5))
    return nn.Sequential(*layers)


def cnn_batch(n: int = 8):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    return x, torch.randint(0, 10, (n,), generator=generator)


def same_values(a: dict, b: dict) -> bool:
    """Equal dicts of proxy values, NaN equal to NaN (swap of a net without feature maps)."""
    return list(a) == list(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values())
    )


def proxy(model, batch, name, **kwargs) -> float:
    """One proxy's value."""
    return compute_proxies(model, batch, [name], **kwargs)[name]


# --- closed forms for the one-layer net: logits z = W x + b, p = softmax(z) -------------------


def analytic_linear_terms(layer: nn.Linear, x, y):
    """W, dL/dW and dL/dz for mean cross-entropy, derived by hand (no autograd)."""
    w = layer.weight.detach()
    z = x @ w.T + layer.bias.detach()
    p = torch.softmax(z, dim=1)
    dz = (p - nn.functional.one_hot(y, 3).double()) / len(x)  # dL/dz for mean CE
    return w, dz.T @ x, dz, z, p


def test_registry_matches_contract():
    assert PROXIES == (
        "grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "params", "flops",
        "naswot", "zico", "meco", "swap", "swap_reg", "zen",
    )  # fmt: skip
    values = compute_proxies(one_layer_net(), one_layer_batch())
    assert list(values) == [name for name in PROXIES if name != "swap_reg"]  # it needs swap_mu, swap_sigma
    assert all(isinstance(v, float) for v in values.values())


def test_grad_norm_and_snip_match_the_analytic_gradient():
    layer, batch = one_layer_net(), one_layer_batch()
    w, grad, *_ = analytic_linear_terms(layer, *batch)
    values = compute_proxies(layer, batch, ["grad_norm", "snip"])
    # The bias is not a prunable weight: only the weight's gradient counts.
    assert values["grad_norm"] == pytest.approx(float(torch.linalg.norm(grad)), rel=1e-12)
    assert values["snip"] == pytest.approx(float((grad * w).abs().sum()), rel=1e-12)


def test_grasp_matches_the_analytic_hessian_gradient_product():
    layer, batch = one_layer_net(), one_layer_batch()
    x, _ = batch
    w, g, _, _, p = analytic_linear_terms(layer, *batch)
    # For softmax regression, H v = (1/N) sum_n J_n (v x_n) x_n^T with J_n = diag(p_n) - p_n p_n^T.
    hg = torch.zeros_like(w)
    for x_n, p_n in zip(x, p):
        jac = torch.diag(p_n) - torch.outer(p_n, p_n)
        hg += torch.outer(jac @ (g @ x_n), x_n) / len(x)
    expected = float((-w * hg).sum())
    assert proxy(layer, batch, "grasp") == pytest.approx(expected, rel=1e-10)


def test_fisher_matches_the_analytic_channel_values():
    layer, batch = one_layer_net(), one_layer_batch()
    _, _, dz, z, _ = analytic_linear_terms(layer, *batch)
    per_channel = 0.5 * (z * dz).pow(2).mean(dim=0)
    # As in Abdelfattah et al.'s code, each channel's value counts once per weight (4 inputs).
    expected = float(per_channel.sum()) * 4
    assert proxy(layer, batch, "fisher") == pytest.approx(expected, rel=1e-12)


def test_fisher_scores_the_layer_output_even_with_an_inplace_relu_after_it():
    torch.manual_seed(0)
    inplace = nn.Sequential(nn.Linear(5, 7), nn.ReLU(inplace=True), nn.Linear(7, 3))
    plain = nn.Sequential(inplace[0], nn.ReLU(), inplace[2])
    batch = (torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2]))
    a = proxy(inplace, batch, "fisher")
    assert a > 0
    assert a == pytest.approx(proxy(plain, batch, "fisher"), rel=1e-6)


def two_layer_linear(w1, w2, bias: bool = False) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(w1.shape[1], w1.shape[0], bias=bias),
        nn.Linear(w2.shape[1], w2.shape[0], bias=bias),
    )
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[1].weight.copy_(w2)
    return net


def test_synflow_equals_twice_the_flow_of_a_two_layer_linear_net():
    w1 = torch.tensor([[0.5, 1.0, 2.0], [0.25, 0.75, 1.5]])
    w2 = torch.tensor([[1.0, 2.0], [0.5, 0.1], [3.0, 0.2], [1.0, 1.0]])
    # R = 1^T W2 W1 1 is linear in each weight matrix, so sum(w * dR/dw) = R per layer.
    ones = torch.ones(4, dtype=torch.float64)
    flow = float(ones @ w2.double() @ w1.double() @ ones[:3])
    batch = (torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    assert proxy(two_layer_linear(w1, w2), batch, "synflow") == pytest.approx(2 * flow, rel=1e-12)
    # Signs do not matter: synflow linearizes the net with |w|.
    signed = two_layer_linear(-w1, w2 * torch.tensor([[1.0, -1.0]]))
    assert proxy(signed, batch, "synflow") == pytest.approx(2 * flow, rel=1e-12)


def test_synflow_ignores_batchnorm_and_dropout():
    w1 = torch.tensor([[0.5, 1.0, 2.0], [0.25, 0.75, 1.5]])
    w2 = torch.tensor([[1.0, 2.0], [0.5, 0.1]])
    plain = two_layer_linear(w1, w2)
    with_bn = nn.Sequential(plain[0], nn.BatchNorm1d(2), nn.Dropout(0.5), plain[1])
    with torch.no_grad():  # a batch norm that would change the flow if it were kept
        with_bn[1].weight.fill_(3.0)
        with_bn[1].running_var.fill_(0.25)
    batch = (torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    expected = proxy(plain, batch, "synflow")
    assert proxy(with_bn, batch, "synflow") == pytest.approx(expected, rel=1e-12)


def test_synflow_runs_in_float64_where_float32_overflows():
    # 40 layers of 64 units with weights 4: the flow is 64^40 * 4^40, far beyond float32.
    net = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(40)])
    for layer in net:
        nn.init.constant_(layer.weight, 4.0)
    value = proxy(net, (torch.randn(2, 64), torch.zeros(2, dtype=torch.long)), "synflow")
    flow = 64 * 64.0**40 * 4.0**40  # R = 1^T W40 ... W1 1
    assert value == pytest.approx(40 * flow, rel=1e-9)


def test_jacob_cov_of_a_linear_net_has_the_collinear_closed_form():
    # For f(x) = W x every sample has the same input Jacobian 1^T W: C is all ones, with
    # eigenvalues (n, 0, ..., 0).
    torch.manual_seed(0)
    net = nn.Linear(6, 3, bias=False).double()
    n = 5
    batch = (torch.randn(n, 6, dtype=torch.float64), torch.zeros(n, dtype=torch.long))
    expected = -(math.log(n + EPS) + 1 / (n + EPS)) - (n - 1) * (math.log(EPS) + 1 / EPS)
    assert proxy(net, batch, "jacob_cov") == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_score_of_decorrelated_rows_is_minus_batch_size():
    # Rows with zero mean and orthogonal to each other: C is the identity.
    rows = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    identity_score = -3 * (math.log(1 + EPS) + 1 / (1 + EPS))
    assert jacob_cov_score(rows) == pytest.approx(identity_score, rel=1e-12)
    assert math.isnan(jacob_cov_score(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])))


def test_proxies_are_deterministic_and_leave_the_callers_rng_alone():
    model, batch = small_cnn(dropout=True), cnn_batch()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = compute_proxies(model, batch)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = compute_proxies(model, batch)
    assert first == second
    assert all(math.isfinite(v) for v in first.values())


def test_each_proxy_alone_equals_its_value_in_the_full_run():
    # No proxy may see another's gradients, running statistics or modified weights.
    model, batch = small_cnn(), cnn_batch()
    settings = {"swap_mu": 0.5, "swap_sigma": 10.0}
    together = compute_proxies(model, batch, **settings)
    for name in reversed(PROXIES):
        assert proxy(model, batch, name, **settings) == together[name], name


@pytest.mark.parametrize("n", [8, 1])
def test_grad_norm_and_snip_share_one_backward_with_the_values_each_gets_alone(n, monkeypatch):
    from paitune.proxies import compute as compute_module

    model, batch = small_cnn(dropout=True), cnn_batch(n)
    masks = {"3.weight": torch.rand(6, 4, 3, 3, generator=torch.Generator().manual_seed(2)) > 0.5}
    alone = {name: proxy(model, batch, name, masks=masks) for name in ("grad_norm", "snip", "synflow")}
    copies = []
    original = compute_module.working_copy
    monkeypatch.setattr(compute_module, "working_copy", lambda *a: copies.append(1) or original(*a))
    together = compute_proxies(model, batch, ["snip", "synflow", "grad_norm"], masks=masks)
    assert list(together) == ["snip", "synflow", "grad_norm"]
    assert together == alone and len(copies) == 2  # one copy for both gradient proxies
    # Independently: the masked net's loss gradient in train mode, dropout seeded with 0.
    net = copy.deepcopy(model)
    with torch.no_grad():
        net[3].weight.mul_(masks["3.weight"])
    net.train()  # batch norm over the positions of its map, even for one sample
    weights = [net[0].weight, net[3].weight, net[-1].weight]
    kept = [torch.ones_like(weights[0]), masks["3.weight"].float(), torch.ones_like(weights[2])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        grads = torch.autograd.grad(nn.functional.cross_entropy(net(batch[0]), batch[1]), weights)
    assert together["grad_norm"] == pytest.approx(sum(float((g * k).norm()) for g, k in zip(grads, kept)), rel=1e-6)
    expected_snip = sum(float((g * k * w.detach()).abs().sum()) for g, k, w in zip(grads, kept, weights))
    assert together["snip"] == pytest.approx(expected_snip, rel=1e-6)


@pytest.mark.parametrize("train_mode", [True, False])
def test_model_is_unchanged(train_mode):
    model, batch = small_cnn(dropout=True), cnn_batch()
    model.train(train_mode)
    model[4].eval()  # a mixed mode must survive too
    model[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    masks = {"0.weight": torch.rand(4, 1, 3, 3) > 0.5}
    with torch.no_grad():  # a caller's no_grad must not switch the gradient proxies off
        values = compute_proxies(model, batch, masks=masks)
    assert all(math.isfinite(v) for v in values.values())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert not model[0].bias.requires_grad and model[0].weight.requires_grad


def test_proxies_under_a_callers_inference_mode_equal_those_outside_it():
    model, batch = small_cnn(), cnn_batch()
    outside = compute_proxies(model, batch, masks={"0.weight": torch.arange(36).reshape(4, 1, 3, 3) % 2 == 0})
    with torch.inference_mode():  # the batch and masks made in it are inference tensors
        x, y = (t.clone() for t in batch)
        inside = compute_proxies(model, (x, y), masks={"0.weight": torch.arange(36).reshape(4, 1, 3, 3) % 2 == 0})
    assert inside.keys() == outside.keys()
    assert all(inside[k] == outside[k] or (math.isnan(inside[k]) and math.isnan(outside[k])) for k in outside)


@pytest.mark.parametrize("name", [p for p in PROXIES if p != "params"])  # params never runs the model
def test_a_forward_that_returns_a_tuple_is_one_clear_error(name):
    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2, 3)

        def forward(self, x):
            logits = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
            return logits, logits.sum()

    with pytest.raises(PaituneError) as err:
        compute_proxies(TupleOut(), cnn_batch(), [name], swap_mu=1.0, swap_sigma=1.0)
    assert str(err.value) == "the model's forward must return one Tensor of logits; it returned tuple"


def test_all_proxies_run_on_a_cnn_with_batchnorm_even_for_one_sample():
    model = small_cnn()
    for n in (8, 1):
        values = compute_proxies(model, cnn_batch(n))
        if n == 1:
            assert math.isnan(values.pop("jacob_cov"))  # one Jacobian: no correlation matrix
        assert all(math.isfinite(v) for v in values.values()), values
        assert values["synflow"] > 0 and values["grad_norm"] > 0 and values["fisher"] > 0
    # BatchNorm1d cannot compute batch statistics of one sample; we use its running stats.
    mlp = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    single = (torch.randn(1, 4), torch.tensor([1]))
    values = compute_proxies(mlp, single)
    assert math.isnan(values.pop("swap"))  # no feature maps: swap is undefined
    assert math.isnan(values.pop("jacob_cov"))
    assert all(math.isfinite(v) for v in values.values())


def test_dense_cnn_params_and_flops():
    values = compute_proxies(small_cnn(), cnn_batch(), ["params", "flops"])
    params = (4 * 9 + 4) + 2 * 4 + (6 * 4 * 9 + 6) + 2 * 6 + (54 * 10 + 10)
    # 2 FLOPs per multiply-accumulate, for one sample: conv1 8x8x4 outputs of 9 MACs,
    # conv2 3x3x6 outputs of 36 MACs, the linear layer 54x10 MACs.
    flops = 2 * (8 * 8 * 4 * 9 + 3 * 3 * 6 * 36 + 54 * 10)
    assert values == {"params": float(params), "flops": float(flops)}


def test_masks_halve_a_linear_layers_flops_and_drop_its_pruned_params():
    layer = nn.Linear(8, 4)
    batch = (torch.randn(3, 8), torch.tensor([0, 1, 2]))
    dense = compute_proxies(layer, batch, ["params", "flops"])
    assert dense == {"params": 36.0, "flops": 64.0}
    half = torch.zeros(4, 8, dtype=torch.bool)
    half[:, ::2] = True
    pruned = compute_proxies(layer, batch, ["params", "flops"], masks={"weight": half})
    assert pruned == {"params": 36.0 - 16, "flops": 32.0}


def test_masks_scale_each_cnn_layer_by_its_own_density():
    model, batch = small_cnn(), cnn_batch()
    conv2_quarter = torch.zeros(6, 4, 3, 3, dtype=torch.bool)
    conv2_quarter[:, :1] = True  # one input channel of four
    values = compute_proxies(model, batch, ["params", "flops"], masks={"3.weight": conv2_quarter})
    dense = compute_proxies(model, batch, ["params", "flops"])
    assert values["params"] == dense["params"] - 6 * 3 * 9
    assert values["flops"] == dense["flops"] - 2 * 3 * 3 * 6 * 36 * 0.75


def test_masked_gradient_proxies_score_the_pruned_network():
    layer, batch = one_layer_net(), one_layer_batch()
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    pruned = one_layer_net()
    with torch.no_grad():
        pruned.weight.mul_(mask)
    w, grad, *_ = analytic_linear_terms(pruned, *batch)
    values = compute_proxies(layer, batch, ["grad_norm", "snip", "synflow"], masks={"weight": mask})
    # Pruned weights are not parameters of the pruned net: their gradient does not count.
    assert values["grad_norm"] == pytest.approx(float(torch.linalg.norm(grad * mask)), rel=1e-12)
    assert values["snip"] == pytest.approx(float((grad * w).abs().sum()), rel=1e-12)
    # Synflow of a single layer with no bias in the way: sum |w| over the kept weights.
    assert values["synflow"] == pytest.approx(float((w.abs() * mask).sum()), rel=1e-12)
    # An all-ones mask, boolean or torch.nn.utils.prune-style float, changes nothing.
    dense = compute_proxies(layer, batch)
    for ones in (torch.ones(3, 4, dtype=torch.bool), torch.ones(3, 4)):
        assert same_values(compute_proxies(layer, batch, masks={"weight": ones}), dense)


def test_unknown_proxy_name_lists_the_choices():
    expected = r"unknown proxy 'zen_nas'; choose one of: fisher, flops, grad_norm, grasp"
    with pytest.raises(PaituneError, match=expected):
        compute_proxies(one_layer_net(), one_layer_batch(), ["snip", "zen_nas"])


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({"fc.weight": torch.ones(3, 4) > 0}, "mask for unknown parameter 'fc.weight'"),
        ({"weight": torch.ones(4, 3) > 0}, r"must match the parameter's shape \(3, 4\)"),
        ({"weight": torch.rand(3, 4)}, "must be boolean"),
    ],
)
def test_bad_masks_are_rejected(masks, message):
    with pytest.raises(PaituneError, match=message):
        compute_proxies(one_layer_net(), one_layer_batch(), masks=masks)


@pytest.mark.parametrize(
    "batch",
    [
        torch.randn(3, 4),
        (torch.randn(3, 4), torch.randn(3)),
        (torch.randn(3, 4), torch.tensor([0, 1])),
        (torch.randn(0, 4), torch.zeros(0, dtype=torch.long)),
        (torch.zeros(3, 4, dtype=torch.long), torch.tensor([0, 1, 2])),
    ],
)
def test_bad_batches_are_rejected(batch):
    with pytest.raises(PaituneError, match="batch"):
        compute_proxies(one_layer_net().float(), batch)


def test_torch_prune_masks_are_understood():
    from torch.nn.utils import prune

    layer, batch = one_layer_net(), one_layer_batch()
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    expected = compute_proxies(layer, batch, masks={"weight": mask})
    # torch.nn.utils.prune's mask counts as ours (params, flops), and may be narrowed further.
    pruned = one_layer_net()
    prune.custom_from_mask(pruned, "weight", mask)
    assert same_values(compute_proxies(pruned, batch), expected)
    assert hasattr(pruned, "weight_orig") and prune.is_pruned(pruned)  # the caller's is intact
    assert torch.equal(pruned.weight, layer.weight * mask)
    narrower = mask.clone()
    narrower[0, 0] = False
    assert same_values(
        compute_proxies(pruned, batch, masks={"weight_orig": narrower}),
        compute_proxies(layer, batch, masks={"weight": narrower}),
    )


def test_parametrized_weights_are_refused_with_the_fix():
    from torch.nn.utils import parametrize

    class Halve(nn.Module):
        def forward(self, weight):
            return weight / 2

    layer = one_layer_net()
    parametrize.register_parametrization(layer, "weight", Halve())
    with pytest.raises(PaituneError, match="remove_parametrizations"):
        compute_proxies(layer, one_layer_batch())
    assert parametrize.is_parametrized(layer, "weight")


# --- degenerate batches: one sample, odd halves -----------------------------------------------


def batch_statistics_only(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` whose BatchNorm2d layers keep no running statistics, so they normalize
    by the batch's statistics in any mode: the train-mode behaviour, whatever the batch size."""
    net = copy.deepcopy(model)
    for index, module in enumerate(net):
        if isinstance(module, nn.BatchNorm2d):
            plain = nn.BatchNorm2d(module.num_features, track_running_stats=False)
            plain.load_state_dict({"weight": module.weight, "bias": module.bias})
            net[index] = plain
    return net


def test_batch_norm_2d_normalizes_one_sample_over_its_positions():
    # Train mode is defined for a (1, C, H, W) map (statistics over the positions): no proxy may
    # switch such a layer to its running statistics because the batch has one sample.
    model = small_cnn()
    with torch.no_grad():
        for norm in (model[1], model[4]):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    names = ["grad_norm", "snip", "grasp", "fisher", "naswot", "swap", "meco"]
    batch = cnn_batch(1)
    got = compute_proxies(model, batch, names)
    expected = compute_proxies(batch_statistics_only(model), batch, names)
    for name in names:
        assert got[name] == pytest.approx(expected[name], rel=1e-9), name


def test_one_sample_batch_norm_1d_uses_running_stats_and_batch_norm_2d_batch_stats():
    # BatchNorm1d on (1, C) sees one value per channel: only its running statistics are defined.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 6 * 6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10),
    )  # fmt: skip
    with torch.no_grad():
        model[5].running_mean.uniform_(-0.5, 0.5)
        model[5].running_var.uniform_(0.5, 2.0)
    x, y = cnn_batch(1)
    net = batch_statistics_only(model).train()
    net[5].eval()
    weights = [net[0].weight, net[4].weight, net[7].weight]
    grads = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), weights)
    values = compute_proxies(model, (x, y), ["grad_norm", "snip"])
    assert values["grad_norm"] == pytest.approx(sum(float(g.norm()) for g in grads), rel=1e-9)
    expected_snip = sum(float((g * w.detach()).abs().sum()) for g, w in zip(grads, weights))
    assert values["snip"] == pytest.approx(expected_snip, rel=1e-9)


def test_jacob_cov_of_one_sample_is_nan():
    # One Jacobian has no correlation matrix (the authors' code fails and scores NaN).
    assert math.isnan(jacob_cov_score(np.array([[0.0, 1.0, 2.0]])))
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        assert math.isnan(proxy(net, (torch.randn(1, 8), torch.tensor([1])), "jacob_cov"))
    assert math.isnan(proxy(small_cnn(), cnn_batch(1), "jacob_cov"))


def no_running_stats_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16, track_running_stats=False), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("n", [1, 2, 8])
def test_a_batch_norm_without_running_statistics_never_stops_the_proxies(n):
    # flops counts one sample, and meco (and zico's halves, and every proxy at n = 1) run a
    # BatchNorm1d on one value per channel. Without running statistics to fall back on, each value
    # is normalized by itself, to 0, and the layer outputs its bias; train mode refuses to compute
    # that and raised.
    model = no_running_stats_mlp()
    x, y = torch.randn(n, 8), torch.randint(0, 3, (n,))
    values = compute_proxies(model, (x, y))
    assert values["flops"] == 2 * (8 * 16 + 16 * 3)  # 2 per multiply-add, as with running stats
    assert {name for name, v in values.items() if math.isnan(v)} <= {"jacob_cov", "swap"}  # swap: no 4-D ReLU


def test_one_value_normalized_by_itself_gives_the_bias_and_no_gradient_to_the_input():
    from paitune.proxies.network import train_mode

    norm = nn.BatchNorm1d(5, track_running_stats=False)
    with torch.no_grad():
        norm.bias.copy_(torch.arange(5.0))
    x = torch.randn(1, 5, requires_grad=True)
    with train_mode(norm):
        out = norm(x)
        assert torch.equal(out, torch.arange(5.0)[None])
        out.square().sum().backward()
        assert x.grad is None or not x.grad.any()
        assert torch.equal(norm.bias.grad, 2 * torch.arange(5.0))
        two = norm(torch.randn(2, 5))  # a batch with statistics normalizes by them, as always
    assert norm.running_mean is None and not torch.allclose(two, torch.arange(5.0).expand(2, 5))


def mixed_norm_net() -> nn.Sequential:
    """Batch norms of every kind a degenerate batch can trip: momentum None, no running stats, 1d."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None), nn.LeakyReLU(0.1),
        nn.Conv2d(4, 4, 3, stride=2), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10),
    )  # fmt: skip


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_every_proxy_runs_and_leaves_the_model_alone_on_any_batch_size(n):
    model = mixed_norm_net()
    model.train()
    model[8].eval()  # a mixed mode must survive too
    model[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    values = compute_proxies(model, cnn_batch(n), swap_mu=1.0, swap_sigma=10.0)
    assert list(values) == list(PROXIES)
    undefined = {"jacob_cov"} if n == 1 else set()  # one sample: no correlation matrix
    assert {name for name, v in values.items() if math.isnan(v)} == undefined, values
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [name != "0.bias" for name, _ in model.named_parameters()]
