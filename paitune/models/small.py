"""Small models: LeNet-300-100 (``mlp``), a small CNN for 8x8 digits (``cnn``), and LeNet-5."""

from __future__ import annotations

import math

import torch
from torch import nn

from paitune.models.base import PaiModel, after_pool, image_shape, pool_kernel


class MLP(PaiModel):
    """LeNet-300-100 (LeCun et al. 1998; the lottery-ticket MNIST net): flatten -> 300 -> 100 -> classes."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (300, 100)):
        super().__init__(input_shape, num_classes)
        widths = (math.prod(input_shape), *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(PaiModel):
    """Three 3x3 conv layers (32, 64, 64 channels, ReLU, a max-pool after the 2nd and 3rd) and a linear head.

    Sized for the 8x8 digits (8 -> 4 -> 2 pixels, 256 features into the head, about 58k weights);
    larger inputs work too, the head growing with the remaining spatial size.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(input_shape, num_classes)
        channels, height, width = image_shape("cnn", self.input_shape)
        kernel1 = pool_kernel(height, width)
        height, width = after_pool(height, width)
        kernel2 = pool_kernel(height, width)
        height, width = after_pool(height, width)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel1),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel2),
        )
        self.classifier = nn.Linear(64 * height * width, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class LeNet5(PaiModel):
    """LeNet-5 with ReLU and max-pooling: conv5(6) -> pool -> conv5(16) -> pool -> 120 -> 84 -> classes.

    The 5x5 convolutions are unpadded (as in the paper) when the input is large enough and
    "same"-padded otherwise: the first pads when the input is under 32 pixels (so 28x28 MNIST
    behaves like the paper's padded 32x32, both giving the classic 16x5x5 features), the second
    when its input is under 10 pixels (so 8x8 digits give 16x2x2 features).
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(input_shape, num_classes)
        channels, height, width = image_shape("lenet5", self.input_shape)
        pad1 = (2 if height < 32 else 0, 2 if width < 32 else 0)
        height, width = height + 2 * pad1[0] - 4, width + 2 * pad1[1] - 4
        kernel1 = pool_kernel(height, width)
        height, width = after_pool(height, width)
        pad2 = (2 if height < 10 else 0, 2 if width < 10 else 0)
        height, width = height + 2 * pad2[0] - 4, width + 2 * pad2[1] - 4
        kernel2 = pool_kernel(height, width)
        height, width = after_pool(height, width)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=pad1),
            nn.ReLU(),
            nn.MaxPool2d(kernel1),
            nn.Conv2d(6, 16, 5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(kernel2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * height * width, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
