"""``build_model``: models by name, seeded without touching the global RNG; ``register_model`` adds one."""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable, Sequence

import torch

from paitune.errors import PaituneError, unknown_choice
from paitune.models.base import PaiModel
from paitune.models.resnet import cifar_resnet, resnet18
from paitune.models.small import MLP, LeNet5, SmallCNN
from paitune.models.vgg import VGG
from paitune.models.wide_resnet import WideResNet
from paitune.registry import Registry

Builder = Callable[[tuple[int, ...], int], PaiModel]

_BUILDERS: Registry[Builder] = Registry("model")


def register_model(name: str, builder: Builder) -> Builder:
    """Make ``name`` a value of the trial option ``model``: ``builder(input_shape, num_classes)``
    returns a ``PaiModel`` (its weights drawn from the global torch RNG, which ``build_model``
    seeds)."""
    return _BUILDERS.add(name, builder)


def model_names() -> tuple[str, ...]:
    """The models a space or the CLI may name. ``build_model`` also accepts any CIFAR ResNet depth
    6n+2 (resnet110, ...) and any wide ResNet wrn{6n+4}_{k} (wrn40_2, ...)."""
    return _BUILDERS.names()


register_model("mlp", MLP)
register_model("cnn", SmallCNN)
register_model("lenet5", LeNet5)
for _vgg in ("vgg11", "vgg16", "vgg19"):
    register_model(_vgg, functools.partial(VGG, _vgg))
for _depth in (20, 32, 56):
    register_model(f"resnet{_depth}", functools.partial(cifar_resnet, _depth))
register_model("resnet18", resnet18)
register_model("wrn16_4", functools.partial(WideResNet, 16, 4))
register_model("wrn28_10", functools.partial(WideResNet, 28, 10))
MODELS: tuple[str, ...] = model_names()  # the built-in models

_CIFAR_RESNET = re.compile(r"resnet(\d+)")
_WIDE_RESNET = re.compile(r"wrn(\d+)_(\d+)")


def build_model(name: str, input_shape: Sequence[int], num_classes: int, *, seed: int | None = None) -> PaiModel:
    """Build model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_classes`` outputs.

    With ``seed``, the weights are drawn from a private RNG state seeded by it (same seed, same
    weights) and the caller's global torch RNG is left exactly as it was; without, they are drawn
    from the global RNG.
    """
    builder = _builder(name)
    shape = _check_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise PaituneError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if seed is None:
        return builder(shape, int(num_classes))
    # devices=[]: models are built on the CPU, and forking CUDA RNGs would initialize CUDA in
    # processes that never use it.
    with torch.random.fork_rng(devices=[]):
        seed_cpu_generator(seed)
        return builder(shape, int(num_classes))


def seed_cpu_generator(seed: int) -> None:
    """``torch.manual_seed(seed)`` for weights drawn on the CPU: seeds the CPU generator only.

    torch.manual_seed also seeds every accelerator's generator, which ``fork_rng(devices=[])``
    does not restore, and costs about 0.3 ms a call. Where the default device is not the CPU the
    weights come from that device's generator, so there torch.manual_seed is kept.
    """
    if torch.empty(0).device.type == "cpu":  # a tensor without a device: the default device
        torch.random.default_generator.manual_seed(int(seed))
    else:
        torch.manual_seed(seed)


def _builder(name: str) -> Builder:
    if not isinstance(name, str):
        raise unknown_choice("model", name, model_names())
    if name in _BUILDERS:
        return _BUILDERS.get(name)
    match = _CIFAR_RESNET.fullmatch(name)
    if match:
        depth = int(match.group(1))
        if depth < 8 or (depth - 2) % 6:
            raise PaituneError(
                f"model {name!r}: a CIFAR ResNet's depth must be 6n+2 (20, 32, 56, 110, ...), or use resnet18"
            )
        return lambda shape, classes: cifar_resnet(depth, shape, classes)
    match = _WIDE_RESNET.fullmatch(name)
    if match:
        depth, width = int(match.group(1)), int(match.group(2))
        if depth < 10 or (depth - 4) % 6 or width < 1:
            raise PaituneError(
                f"model {name!r}: a wide ResNet is wrn{{depth}}_{{width}} with depth 6n+4 (16, 28, 40, ...) "
                "and width >= 1"
            )
        return lambda shape, classes: WideResNet(depth, width, shape, classes)
    raise unknown_choice("model", name, model_names())


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape):
        raise PaituneError(
            f"input_shape must be positive integers without the batch dimension, e.g. (3, 32, 32), got {input_shape!r}"
        )
    return tuple(int(d) for d in shape)
