"""Training-data augmentation on the device, one whole batch at a time.

``augment: standard`` is what the PaI literature trains each image dataset with (SNIP, GraSP,
SynFlow, and the sanity-check papers all follow the ResNet recipe):

* 32x32 images (CIFAR-10/100, and ``synthetic`` data of that shape): random crop with 4 pixels of
  zero padding, then a random horizontal flip. The padding is black, as torchvision's pipeline in
  GraSP's, SynFlow's and open_lth's code pads the raw image before standardizing it: the stored
  inputs are standardized, so the pad value is a black pixel's standardized value per channel
  (-mean/std; 0 for synthetic data, which has no raw image);
* digits, MNIST and Fashion-MNIST, and any input that is not an image: nothing (a flipped digit is
  another digit; the papers train these without augmentation).

The random draws (one crop offset pair and one flip bit per image) come from a CPU
``torch.Generator`` seeded from the trial's seed, so a run is the same on every device and
repeatable on the CPU. A trainer draws a whole epoch's worth at once (``Augmenter.draw_epoch``)
and moves them to the device in one copy: a host-to-device copy per batch would make the host
wait for the device at every step. Each batch then takes its slice. The crop and flip are two
``gather`` calls over the padded batch: no per-image Python loop, no DataLoader, no host round
trip of the images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.vision import black_pixel
from ..errors import unknown_choice

AUGMENTS = ("none", "standard")

# Datasets the literature trains without augmentation even when standard is asked for.
_PLAIN_DATASETS = frozenset({"digits", "mnist", "fashion_mnist"})
# Derives the augmentation stream from the trial seed, apart from the data-order stream.
_SEED_OFFSET = 0x5EED_A06


@dataclass(frozen=True)
class CropFlip:
    """Random crop of the input's own size from the padded image, then a random horizontal flip.

    ``fill``: the padding's value per channel (the dataset's black pixel); None pads with 0.
    """

    padding: int = 4
    flip: bool = True
    fill: tuple[float, ...] | None = None

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: row offset, column offset (each in 0 .. 2*padding) and whether to flip."""
        span = 2 * self.padding + 1
        offsets = torch.randint(0, span, (2, n), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return offsets[0], offsets[1], flips

    def apply(self, x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) cropped at (top, left) of its padded self and flipped where ``flip``."""
        n, c, h, w = x.shape
        padded = self._pad(x)
        device = x.device
        top, left, flip = top.to(device), left.to(device), flip.to(device)
        rows = top[:, None] + torch.arange(h, device=device)  # (N, H)
        cols = torch.arange(w, device=device).expand(n, w)
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + left[:, None]  # (N, W)
        picked = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
        return picked.gather(3, cols[:, None, None, :].expand(n, c, h, w))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, *self.draw(x.shape[0], generator))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if not p:
            return x
        if self.fill is None:
            return F.pad(x, (p, p, p, p))
        n, c, h, w = x.shape
        fill = _fill_tensor(self.fill, x.dtype, x.device)
        padded = fill.expand(n, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x  # the image itself exactly, whatever the fill
        return padded


@functools.lru_cache(maxsize=16)
def _fill_tensor(fill: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The per-channel pad value on the device, made once (not a host-to-device copy per batch)."""
    return torch.tensor(fill, dtype=dtype, device=device).view(1, -1, 1, 1)


def standard_policy(dataset: str, input_shape: tuple[int, ...]) -> CropFlip | None:
    """What ``standard`` means for this dataset (None: train on the images as they are)."""
    if dataset in _PLAIN_DATASETS or len(input_shape) != 3:
        return None
    if tuple(input_shape[1:]) == (32, 32):
        return CropFlip(padding=4, flip=True, fill=black_pixel(dataset))
    return None


class Augmenter:
    """A dataset's augmentation with its own seeded random stream (saved with the trainer's state)."""

    def __init__(self, kind: str, dataset: str, input_shape: tuple[int, ...], seed: int):
        if kind not in AUGMENTS:
            raise unknown_choice("augment", kind, AUGMENTS)
        self.policy = standard_policy(dataset, tuple(input_shape)) if kind == "standard" else None
        self.generator = torch.Generator().manual_seed(int(seed) + _SEED_OFFSET)

    @property
    def active(self) -> bool:
        return self.policy is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One batch augmented with draws of its own."""
        return x if self.policy is None else self.policy(x, self.generator)

    def draw_epoch(self, n: int, device: torch.device) -> tuple[torch.Tensor, ...] | None:
        """The draws for ``n`` images (an epoch), on ``device``; None when nothing is augmented."""
        if self.policy is None:
            return None
        return tuple(t.to(device) for t in self.policy.draw(n, self.generator))

    def apply(self, x: torch.Tensor, draws: tuple[torch.Tensor, ...] | None, begin: int) -> torch.Tensor:
        """Batch ``x``, the epoch's images ``begin`` .. ``begin + len(x)``, with their slice of ``draws``."""
        if draws is None:
            return x
        return self.policy.apply(x, *(d[begin : begin + x.shape[0]] for d in draws))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
