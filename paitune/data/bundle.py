"""The in-memory dataset types every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paitune.errors import PaituneError


@dataclass(frozen=True)
class Split:
    """One whole split in memory: inputs ``x`` (float32, N x *input_shape) and labels ``y`` (int64, N).

    Loaded splits are cached per process and shared between trials: treat the tensors as read-only.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.y.dtype != torch.int64 or self.y.dim() != 1:
            raise PaituneError(f"split labels must be a 1-D int64 tensor, got {self.y.dtype} {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise PaituneError(f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DataBundle:
    """A dataset's three splits plus what a model needs to know about them."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    train: Split
    val: Split
    test: Split
