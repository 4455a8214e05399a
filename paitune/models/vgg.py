"""VGG-11/16/19 with batch norm, CIFAR-style, as GraSP's code builds them (Wang et al. 2020; the
plans of Simonyan & Zisserman 2015 without their last max-pool): 3x3 conv (no bias: batch norm
follows) + BN + ReLU stacks, four 2x2 max-pools, a 2x2 average pool over the last 2x2 map, one
Linear(512, classes). SynFlow's and open_lth's VGGs are the same with conv biases."""

from __future__ import annotations

import torch
from torch import nn

from paitune.models.base import PaiModel, after_pool, image_shape, pool_kernel

POOL = "M"
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512),
    "vgg19": (
        64,
        64,
        POOL,
        128,
        128,
        POOL,
        256,
        256,
        256,
        256,
        POOL,
        512,
        512,
        512,
        512,
        POOL,
        512,
        512,
        512,
        512,
    ),  # fmt: skip
}


class VGG(PaiModel):
    """A VGG conv stack from ``CONFIGS[name]``, then global average pooling and a linear classifier.

    On 32x32 inputs the four pools leave 2x2 maps, so the global pool is GraSP's AvgPool2d(2) (and
    on 64x64 Tiny ImageNet its AvgPool2d(4)). Smaller inputs (8x8 digits, 28x28 MNIST) skip the
    pools along sides already down to 1 pixel.
    """

    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(input_shape, num_classes)
        in_channels, height, width = image_shape(name, self.input_shape)
        layers: list[nn.Module] = []
        for item in CONFIGS[name]:
            if item == POOL:
                if (height, width) != (1, 1):
                    layers.append(nn.MaxPool2d(pool_kernel(height, width)))
                    height, width = after_pool(height, width)
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU()]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
