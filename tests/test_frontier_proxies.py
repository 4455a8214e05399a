"""naswot, zico, meco, swap, swap_reg and zen against hand-computed values."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from paitune.errors import PaituneError
from paitune.models import build_model
from paitune.proxies import compute_proxies
from paitune.pruning import prune

NEW = ("naswot", "zico", "meco", "swap", "zen")


def batch(shape, n=8, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def one(model, b, name, **kwargs) -> float:
    return compute_proxies(model, b, [name], **kwargs)[name]


def bias_free_mlp(seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3)
    )


# --- naswot ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,shape,units",
    [
        ("mlp", (1, 8, 8), 300 + 100),
        # resnet20 applies F.relu: stem 16x8x8, then 6 ReLUs per stage at 16x8x8, 32x4x4, 64x2x2.
        ("resnet20", (3, 8, 8), 1024 + 6 * 1024 + 6 * 512 + 6 * 256),
    ],
)
def test_naswot_of_one_sample_is_log_relu_units(name, shape, units):
    model = build_model(name, shape, 10, seed=0)
    assert one(model, batch(shape, n=1), "naswot") == pytest.approx(math.log(units), rel=1e-12)


def test_naswot_is_the_log_determinant_of_the_agreement_kernel():
    model = bias_free_mlp()
    x, y = batch((4,), n=5, classes=3)
    h1 = x @ model[0].weight.detach().T
    h2 = torch.relu(h1) @ model[2].weight.detach().T
    codes = torch.cat([h1 > 0, h2 > 0], dim=1).double().numpy()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    sign, expected = np.linalg.slogdet(kernel)
    assert sign != 0
    assert one(model, (x, y), "naswot") == pytest.approx(expected, rel=1e-12)
    assert one(model, (2 * x, y), "naswot") == one(model, (x, y), "naswot")  # bias-free: scale-free
    same = (x[:1].repeat(4, 1), y[:4])
    assert one(model, same, "naswot") == float("-inf")


# --- zico -----------------------------------------------------------------------------------------


def test_zico_of_identical_halves_and_of_one_sample_is_zero():
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    x, y = batch((1, 8, 8), n=4)
    doubled = (torch.cat([x, x]), torch.cat([y, y]))
    assert one(model, doubled, "zico") == 0.0
    assert one(model, (x[:1], y[:1]), "zico") == 0.0


def test_zico_matches_the_hand_computed_signal_to_noise():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).double()
    x, y = batch((4,), n=6, classes=3)
    x = x.double()
    w, b = layer.weight.detach(), layer.bias.detach()
    grads = []
    for xh, yh in ((x[:3], y[:3]), (x[3:], y[3:])):
        p = torch.softmax(xh @ w.T + b, dim=1)
        dz = (p - nn.functional.one_hot(yh, 3).double()) / len(xh)
        grads.append((dz.T @ xh).numpy())
    g = np.stack(grads)
    mu, sigma = np.abs(g).mean(0), g.std(0)
    expected = math.log(float((mu[sigma > 0] / sigma[sigma > 0]).sum()))
    assert one(layer, (x, y), "zico") == pytest.approx(expected, rel=1e-10)


def zico_by_hand(model: nn.Module, x, y) -> float:
    """zico with each half on a fresh copy in train mode (a BatchNorm1d on one sample: running stats)."""
    grads = []
    for xh, yh in zip(x.chunk(2), y.chunk(2)):
        net = copy.deepcopy(model).train()
        if len(xh) == 1:
            for module in net.modules():
                if isinstance(module, nn.BatchNorm1d):
                    module.eval()
        weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        grads.append(torch.autograd.grad(nn.functional.cross_entropy(net(xh), yh), weights))
    total = 0.0
    for halves in zip(*grads):
        g = torch.stack(halves).double()
        mu, sigma = g.abs().mean(0), g.std(0, correction=0)
        total += math.log(float((mu[sigma > 0] / sigma[sigma > 0]).sum()))
    return total


def conv_bn_net(momentum) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=momentum), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )


def mlp_bn_net(momentum) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=momentum), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("n", [2, 3, 5, 6])
@pytest.mark.parametrize("make,shape,classes", [(conv_bn_net, (1, 8, 8), 10), (mlp_bn_net, (4,), 3)])
def test_zico_runs_each_half_as_a_batch_of_its_own(n, make, shape, classes):
    # The first half's running statistics must not reach the second half: batch-norm momentum,
    # which only moves the running statistics, cannot change zico.
    b = batch(shape, n=n, seed=1, classes=classes)
    value = one(make(0.1), b, "zico")
    assert one(make(None), b, "zico") == value
    assert value == pytest.approx(zico_by_hand(make(0.1), *b), rel=1e-9)


# --- meco -----------------------------------------------------------------------------------------


def test_meco_sums_the_smallest_correlation_eigenvalue_of_every_module_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1))
    x, y = batch((1, 5, 5), n=4)
    feature = net(x[:1])[0].detach().double().reshape(3, -1).numpy()
    term = float(np.linalg.eigvalsh(np.corrcoef(feature)).min())
    # The root Sequential and its conv both output the map: two terms; only x[:1] is read.
    assert one(net, (x, y), "meco") == pytest.approx(2 * term, rel=1e-9)
    assert one(net, (x[:1], y[:1]), "meco") == one(net, (x, y), "meco")


def test_meco_of_an_mlp_is_zero():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    assert one(model, batch((1, 8, 8)), "meco") == 0.0


# --- swap -----------------------------------------------------------------------------------------


def test_swap_counts_distinct_neuron_patterns():
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0], [-1.0, -2.0]]).view(3, 1, 1, 2)
    y = torch.tensor([0, 1, 0])
    out = torch.relu(torch.cat([x, -x], dim=1)).reshape(3, -1)  # the ReLU's output, per sample
    expected = len(np.unique(np.sign(out.numpy()), axis=1).T)
    # Neuron columns over the 3 samples: (1,1,0), (0,1,0), (0,0,1), (1,0,1): all distinct.
    assert one(net, (x, y), "swap") == expected == 4
    x[2] = x[1]  # the third sample repeats the second: columns (1,1,1), (0,1,1), (0,0,0), (1,0,0)
    assert one(net, (x, y), "swap") == 4
    x[:, 0, 0, 1] = x[:, 0, 0, 0]  # both positions alike: only two distinct columns remain
    assert one(net, (x, y), "swap") == 2
    assert math.isnan(one(bias_free_mlp(), batch((4,), classes=3), "swap"))


class ConvNet(nn.Module):
    """conv -> act1 -> conv -> act2 -> linear; an activation is a module or a function."""

    def __init__(self, act1, act2):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 4, 3)
        self.act1, self.act2 = act1, act2
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(self.act2(self.c2(self.act1(self.c1(x)))).flatten(1))


def leaky(z):
    return nn.functional.leaky_relu(z, 0.2)


def relu_input_and_output(net: ConvNet, x):
    """What an nn.ReLU hook on ``net.act1`` sees in one train-mode forward."""
    seen = []
    hook = net.act1.register_forward_hook(lambda m, i, o: seen.append((i[0].detach(), o.detach())))
    with torch.no_grad():
        net.train()(x)
    hook.remove()
    ((z, out),) = seen
    return z, out


def test_naswot_is_minus_infinity_whenever_its_kernel_is_singular():
    # K = B B^T with B = [C, 1 - C] has rank at most N_A + 1: 32 samples through 7 ReLU units make
    # it singular however distinct the samples are, while slogdet returns a finite rounding-noise
    # value for it. 4 samples with independent codes give a nonsingular K and its log-determinant.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(32, 6)
    assert one(model, (x, torch.zeros(32, dtype=torch.long)), "naswot") == float("-inf")
    for n in range(2, 9):
        xs = x[:n]
        codes = torch.cat([(model[0](xs) > 0), (model[2](model[1](model[0](xs))) > 0)], 1).double()
        both = torch.cat([codes, 1 - codes], 1)
        rank = int(np.linalg.matrix_rank(both.numpy()))
        got = one(model, (xs, torch.zeros(n, dtype=torch.long)), "naswot")
        if rank < n:
            assert got == float("-inf")
        else:
            expected = np.linalg.slogdet((both @ both.T).numpy())[1]
            assert got == pytest.approx(expected, rel=1e-12)


def test_swap_and_naswot_read_relu_but_not_leaky_relu():
    b = batch((1, 8, 8), n=6)
    for act in (nn.LeakyReLU(0.1), leaky, nn.LeakyReLU(0.1, inplace=True)):
        only_leaky = ConvNet(act, act)
        assert math.isnan(one(only_leaky, b, "swap"))  # no ReLU at all, as for an MLP
        assert one(only_leaky, b, "naswot") == float("-inf")  # N_A = 0
    # Mixed: only the ReLU's outputs and inputs count, as an nn.ReLU hook sees them.
    for act2 in (nn.LeakyReLU(0.1), leaky):
        mixed = ConvNet(nn.ReLU(), act2)
        z, out = relu_input_and_output(mixed, b[0])
        expected_swap = torch.unique(torch.sign(out.reshape(len(z), -1)), dim=1).shape[1]
        codes = (z > 0).reshape(len(z), -1).double().numpy()
        _, expected_naswot = np.linalg.slogdet(codes @ codes.T + (1 - codes) @ (1 - codes).T)
        assert one(mixed, b, "swap") == expected_swap
        assert one(mixed, b, "naswot") == pytest.approx(expected_naswot, rel=1e-12)


def test_swap_reg_scales_swap_by_the_size_regularizer_and_needs_its_settings():
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    b = batch((1, 8, 8))
    values = compute_proxies(model, b, ["swap", "swap_reg", "params"], swap_mu=50.0, swap_sigma=30.0)
    factor = math.exp(-((values["params"] / 1000 - 50.0) ** 2) / 30.0)
    assert values["swap_reg"] == pytest.approx(values["swap"] * factor, rel=1e-12)
    for kwargs in ({}, {"swap_mu": 1.0}, {"swap_sigma": 1.0}):
        with pytest.raises(PaituneError, match="swap_mu and swap_sigma"):
            compute_proxies(model, b, ["swap_reg"], **kwargs)
    with pytest.raises(PaituneError, match="swap_sigma > 0"):
        compute_proxies(model, b, ["swap_reg"], swap_mu=1.0, swap_sigma=0.0)
    assert "swap_reg" not in compute_proxies(model, b)  # all proxies: swap_reg only with its settings
    assert "swap_reg" in compute_proxies(model, b, swap_mu=50.0, swap_sigma=30.0)


# --- zen ------------------------------------------------------------------------------------------


def test_zen_is_data_and_weight_free():
    b = batch((1, 8, 8))
    value = one(build_model("cnn", (1, 8, 8), 10, seed=0), b, "zen")
    assert one(build_model("cnn", (1, 8, 8), 10, seed=5), b, "zen") == value
    assert one(build_model("cnn", (1, 8, 8), 10, seed=0), batch((1, 8, 8), seed=3), "zen") == value
    assert math.isfinite(value)


def test_zen_is_free_of_every_normalization_layers_affine_weights():
    # The official code sets batch and group norm to weight 1, bias 0; layer norm likewise here.
    def net():
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.LayerNorm([4, 4, 4]),
            nn.ReLU(), nn.Flatten(), nn.Linear(64, 10),
        )  # fmt: skip

    b = batch((1, 8, 8))
    values = []
    for seed in (0, 1):
        model = net()
        with torch.no_grad():
            torch.manual_seed(seed)
            for module in (model[1], model[4]):
                module.weight.normal_()
                module.bias.normal_()
        values.append(one(model, b, "zen"))
    assert values[0] == values[1] and math.isfinite(values[0])


@pytest.mark.parametrize("n", [4, 1])
@pytest.mark.parametrize("running_stats", [True, False])
def test_zen_with_batch_norm_adds_the_log_running_std(n, running_stats):
    """Conv -> BN -> ReLU -> Linear: zen = log mean ||f(x1) - f(x1 + 0.01 x2)||_1 + log sqrt(mean running_var).

    One sample still normalizes over the map's positions (train mode); a batch norm that keeps no
    running statistics adds nothing.
    """
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(2, track_running_stats=running_stats)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), norm, nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    x, y = batch((1, 5, 5), n=n, classes=4)
    # The same draws in the same order, from the proxies' fixed seed: weights, then x1, x2.
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(2, 1, 3, 3, generator=gen)
    torch.randn(4, 18, generator=gen)  # the classifier's weight: drawn, but f is its input
    x1 = torch.randn(n, 1, 5, 5, generator=gen)
    x2 = torch.randn(n, 1, 5, 5, generator=gen)
    bn = nn.BatchNorm2d(2, track_running_stats=running_stats)

    def f(inp):
        return torch.relu(bn(nn.functional.conv2d(inp, w1))).flatten(1)

    with torch.no_grad():
        delta = (f(x1) - f(x1 + 0.01 * x2)).abs().sum(1).mean()
    expected = math.log(float(delta))
    if running_stats:
        expected += math.log(math.sqrt(float(bn.running_var.mean())))
    assert one(net, (x, y), "zen") == pytest.approx(expected, rel=1e-5)
    assert math.isfinite(compute_proxies(net, (x, y))["zen"])  # with every other proxy too


# --- every model, masked --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("resnet20", (3, 8, 8)), ("vgg11", (3, 8, 8))]
)
def test_new_proxies_on_each_model_pruned_and_unchanged_model(name, shape):
    model = build_model(name, shape, 10, seed=0)
    b = batch(shape, n=6)
    masks = prune(model, "magnitude", sparsity=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    values = compute_proxies(model, b, NEW, masks=masks)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for proxy, value in values.items():
        if proxy == "swap" and name == "mlp":
            assert math.isnan(value)
        else:
            assert math.isfinite(value), (proxy, value)
    again = compute_proxies(model, b, NEW, masks=masks)
    assert all(again[k] == v or (math.isnan(v) and math.isnan(again[k])) for k, v in values.items())
