"""paitune.models: shapes, parameter counts, initialization, seeding, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paitune.errors import PaituneError
from paitune.models import MODELS, build_model
from paitune.models.vgg import CONFIGS, POOL


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_model_names():
    assert MODELS == (
        "mlp", "cnn", "lenet5", "vgg11", "vgg16", "vgg19",
        "resnet20", "resnet32", "resnet56", "resnet18", "wrn16_4", "wrn28_10",
    )  # fmt: skip


@pytest.mark.parametrize("name", MODELS)
def test_forward_on_digits_shaped_input(name):
    model = build_model(name, (1, 8, 8), 10, seed=0)
    assert model.input_shape == (1, 8, 8)
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mlp", (3, 32, 32)),
        ("mlp", (20,)),
        ("cnn", (1, 28, 28)),
        ("cnn", (3, 5, 7)),
        ("lenet5", (1, 28, 28)),
        ("lenet5", (3, 32, 32)),
        ("lenet5", (1, 12, 30)),
        ("vgg11", (1, 28, 28)),
        ("vgg11", (3, 64, 48)),
        ("resnet20", (3, 32, 32)),
        ("resnet18", (3, 16, 16)),
        ("wrn16_4", (3, 32, 32)),
    ],
)
def test_forward_on_other_input_shapes(name, shape):
    model = build_model(name, list(shape), 7, seed=0)
    assert model.input_shape == shape
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_lenet300_100_parameter_count():
    # 784*300 + 300 + 300*100 + 100 + 100*10 + 10
    assert n_params(build_model("mlp", (1, 28, 28), 10)) == 266_610


def test_lenet5_has_the_classic_400_features_on_mnist_and_cifar():
    for shape in ((1, 28, 28), (3, 32, 32)):
        linears = [m for m in build_model("lenet5", shape, 10).modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(400, 120), (120, 84), (84, 10)]


def _vgg_expected_params(name: str, classes: int) -> int:
    total, channels = 0, 3
    for item in CONFIGS[name]:
        if item != POOL:
            total += 9 * channels * item + 2 * item  # bias-free 3x3 conv + BN weight and bias
            channels = item
    return total + 512 * classes + classes


def test_vgg_parameter_counts():
    vgg16 = build_model("vgg16", (3, 32, 32), 10)
    assert n_params(vgg16) == _vgg_expected_params("vgg16", 10) == 14_724_042  # the usual "14.7M"
    assert [m for m in vgg16.modules() if isinstance(m, nn.Linear)][0].in_features == 512
    assert len([m for m in vgg16.modules() if isinstance(m, nn.Linear)]) == 1
    # GraSP's CIFAR VGG: four max-pools leave a 2x2 map, averaged (its AvgPool2d(2)) into the Linear
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = vgg16.eval().features(x)
        assert features.shape == (2, 512, 2, 2)
        expected = vgg16.classifier(torch.nn.functional.avg_pool2d(features, 2).flatten(1))
        torch.testing.assert_close(vgg16(x), expected)


def test_vgg_skips_pools_once_spatial_size_is_one():
    def pools(shape):
        return sum(isinstance(m, nn.MaxPool2d) for m in build_model("vgg11", shape, 10).modules())

    assert pools((3, 32, 32)) == 4
    assert pools((1, 8, 8)) == 3  # 8 -> 4 -> 2 -> 1, then skipped


def test_resnet_parameter_counts_and_shortcuts():
    resnet20 = build_model("resnet20", (3, 32, 32), 10)
    assert n_params(resnet20) == 269_722  # He et al.: 0.27M with option-A shortcuts
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in resnet20.modules())
    convs = [m for m in resnet20.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19  # + 1 linear = 20 weighted layers
    assert n_params(build_model("resnet56", (3, 32, 32), 10)) == pytest.approx(0.85e6, rel=0.01)
    resnet18 = build_model("resnet18", (3, 32, 32), 10)
    assert n_params(resnet18) == pytest.approx(11.17e6, rel=0.001)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in resnet18.modules()) == 3
    assert resnet18.stem[0].kernel_size == (3, 3) and resnet18.stem[0].stride == (1, 1)


def test_option_a_shortcut_pads_channels_and_subsamples():
    block = build_model("resnet20", (3, 32, 32), 10).blocks[3]  # first block of stage 2: 16 -> 32, stride 2
    x = torch.randn(1, 16, 6, 6)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 3, 3)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()


def test_wide_resnet_parameter_counts_and_any_valid_depth():
    assert n_params(build_model("wrn16_4", (3, 32, 32), 10)) == pytest.approx(2.75e6, rel=0.01)
    model = build_model("wrn10_2", (3, 8, 8), 5, seed=0)  # not in MODELS, but a valid WRN-10-2
    assert model.classifier.in_features == 128 and model(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    assert n_params(build_model("resnet8", (3, 8, 8), 10)) < n_params(build_model("resnet20", (3, 8, 8), 10))


def test_wrn28_10_parameter_count():
    assert n_params(build_model("wrn28_10", (3, 32, 32), 10)) == pytest.approx(36.5e6, rel=0.01)


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = weights(build_model("resnet20", (3, 8, 8), 10, seed=7))
    assert torch.equal(torch.get_rng_state(), state)
    b = weights(build_model("resnet20", (3, 8, 8), 10, seed=7))
    c = weights(build_model("resnet20", (3, 8, 8), 10, seed=8))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.0.weight"], c["stem.0.weight"])


def test_without_seed_the_global_rng_decides():
    torch.manual_seed(5)
    a = weights(build_model("cnn", (1, 8, 8), 10))
    torch.manual_seed(5)
    b = weights(build_model("cnn", (1, 8, 8), 10))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_initialization_is_kaiming_fan_in_with_zero_biases_and_unit_batchnorm():
    model = build_model("vgg16", (3, 32, 32), 10, seed=0)
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]  # 512 -> 512, 3x3: fan_in 4608
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 4608), rel=0.01)
    assert abs(conv.weight.mean().item()) < 1e-4
    linear = build_model("mlp", (1, 28, 28), 10, seed=0).layers[1]  # 784 -> 300
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert not linear.bias.any()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and not module.bias.any()


def test_reset_parameters_redraws_weights_and_keeps_shapes():
    model = build_model("resnet20", (3, 8, 8), 10, seed=0)
    before = weights(model)
    with torch.no_grad():  # disturb what a reset must restore: BN affine, biases, running stats
        model.stem[1].weight.fill_(3.0)
        model.classifier.bias.fill_(1.0)
    model.train()
    model(torch.randn(4, 3, 8, 8) * 5 + 2)
    model.reset_parameters()
    after = weights(model)
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert torch.all(model.stem[1].weight == 1) and not model.classifier.bias.any()
    assert not model.stem[1].running_mean.any() and torch.all(model.stem[1].running_var == 1)


def test_reset_parameters_uses_the_global_rng():
    model = build_model("mlp", (4,), 3, seed=0)
    torch.manual_seed(11)
    model.reset_parameters()
    first = weights(model)
    torch.manual_seed(11)
    model.reset_parameters()
    assert all(torch.equal(first[k], v) for k, v in weights(model).items())


def test_unknown_model_lists_the_choices():
    with pytest.raises(PaituneError, match=r"unknown model 'alexnet'; choose one of: cnn, lenet5, mlp, resnet18"):
        build_model("alexnet", (3, 32, 32), 10)


@pytest.mark.parametrize("name", ["cnn", "lenet5", "vgg11", "resnet20", "resnet18", "wrn16_4"])
def test_image_models_reject_flat_input_shapes(name):
    with pytest.raises(PaituneError, match=rf"model '{name}' needs an image input shape \(channels, height, width\)"):
        build_model(name, (64,), 10)


@pytest.mark.parametrize(
    "name, shape, classes, message",
    [
        ("mlp", (), 10, "input_shape must be positive integers"),
        ("mlp", (3, 0, 4), 10, "input_shape must be positive integers"),
        ("mlp", (3.5,), 10, "input_shape must be positive integers"),
        ("mlp", 784, 10, "input_shape must be positive integers"),
        ("mlp", (784,), 1, "num_classes must be an integer >= 2"),
        ("resnet21", (3, 32, 32), 10, r"depth must be 6n\+2"),
        ("wrn17_4", (3, 32, 32), 10, r"depth 6n\+4"),
    ],
)
def test_bad_arguments(name, shape, classes, message):
    with pytest.raises(PaituneError, match=message):
        build_model(name, shape, classes)


@pytest.mark.parametrize("name, shape", [("mlp", (64,)), ("cnn", (1, 8, 8)), ("resnet20", (3, 32, 32))])
def test_forward_flops_per_module_path(name, shape):
    """Keys are named_modules paths ("" the root, which holds the total); a Linear layer does
    2 x in x out FLOPs and a Conv2d 2 x (in / groups) x k x k x out x output pixels per sample."""
    from paitune.models.flops import forward_flops

    model = build_model(name, shape, 10, seed=0).eval()
    sizes = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, i, o, path=path: sizes.__setitem__(path, o.shape[-2] * o.shape[-1]))
    total, per_module = forward_flops(model, torch.zeros(1, *shape))
    modules = dict(model.named_modules())
    assert set(per_module) <= set(modules) and per_module[""] == total > 0
    layers = [p for p, m in modules.items() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers
    for path in layers:
        m = modules[path]
        if isinstance(m, nn.Linear):
            assert per_module[path] == 2 * m.in_features * m.out_features
        else:
            kh, kw = m.kernel_size
            assert per_module[path] == 2 * (m.in_channels // m.groups) * kh * kw * m.out_channels * sizes[path]
