"""ResNets for CIFAR-sized inputs.

``resnet{6n+2}`` (20, 32, 56, ...): He et al. 2016, section 4.2: a 3x3 conv to 16 channels, three
stages of n basic blocks at 16, 32 and 64 channels (stride 2 entering stages 2 and 3), global
average pooling, Linear(64, classes). Shortcuts are option A of the paper: identity, and where the
shape changes, the input subsampled by 2 and zero-padded with the missing channels, so shortcuts
add no weights (resnet20 has 0.27M parameters, as published).

``resnet18``: the ImageNet ResNet-18 block layout (2-2-2-2 basic blocks at 64-512 channels) with
the common CIFAR stem: one 3x3 stride-1 conv and no max-pool. Where the shape changes, its
shortcut is a 1x1 conv + BN (option B), as in the ImageNet model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paitune.models.base import PaiModel, image_shape


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride``, zero-pad the new channels. No weights."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # Pad the channel dimension (F.pad lists dimensions from the last one backwards).
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "zero_pad":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(PaiModel):
    """Stem conv3x3-BN-ReLU, stages of BasicBlocks, global average pooling, a linear classifier."""

    def __init__(
        self,
        name: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        stem_channels: int,
        stages: tuple[tuple[int, int], ...],  # (channels, blocks); every stage after the first has stride 2
        shortcut: str,  # "zero_pad" (option A) or "conv" (option B)
    ):
        super().__init__(input_shape, num_classes)
        in_channels, _, _ = image_shape(name, self.input_shape)
        self.stem = nn.Sequential(conv3x3(in_channels, stem_channels), nn.BatchNorm2d(stem_channels), nn.ReLU())
        blocks: list[nn.Module] = []
        channels = stem_channels
        for index, (out_channels, count) in enumerate(stages):
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, shortcut))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def cifar_resnet(depth: int, input_shape: tuple[int, ...], num_classes: int) -> ResNet:
    """He et al.'s CIFAR ResNet of ``depth`` = 6n + 2 layers, option-A shortcuts."""
    n = (depth - 2) // 6
    return ResNet(
        f"resnet{depth}",
        input_shape,
        num_classes,
        stem_channels=16,
        stages=((16, n), (32, n), (64, n)),
        shortcut="zero_pad",
    )


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> ResNet:
    return ResNet(
        "resnet18",
        input_shape,
        num_classes,
        stem_channels=64,
        stages=((64, 2), (128, 2), (256, 2), (512, 2)),
        shortcut="conv",
    )
