"""Wide ResNets, ``wrn{depth}_{width}`` (Zagoruyko & Komodakis 2016), e.g. WRN-16-4 and WRN-28-10.

A 3x3 conv to 16 channels, then three groups of n = (depth - 4) / 6 pre-activation blocks
(BN-ReLU-conv3x3-BN-ReLU-conv3x3) at 16k, 32k and 64k channels (k = width; stride 2 entering
groups 2 and 3), a final BN-ReLU, global average pooling and Linear(64k, classes). Where the
shape changes, the shortcut is a 1x1 conv applied to the pre-activated input, as in the authors'
code. No dropout (the paper's default for CIFAR without dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paitune.models.base import PaiModel, image_shape


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(PaiModel):
    def __init__(self, depth: int, width: int, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(input_shape, num_classes)
        in_channels, _, _ = image_shape(f"wrn{depth}_{width}", self.input_shape)
        n = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        channels = 16
        for index, out_channels in enumerate((16 * width, 32 * width, 64 * width)):
            for block in range(n):
                blocks.append(PreActBlock(channels, out_channels, 2 if index > 0 and block == 0 else 1))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(out), 1))
