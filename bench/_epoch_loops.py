"""The two reference training loops ``bench.gpu_epoch`` times paitune's trainer against.

Both train the same masked model on the same data with the same augmentation (random crop with
4-pixel zero padding + horizontal flip) and SGD, and keep pruned weights at zero with one
``torch._foreach_mul_`` after each step, as paitune does:

* ``DataLoaderLoop``: the loop of the PaI papers' code. The training set lives on the host as
  one tensor; a ``torch.utils.data.Dataset`` crops and flips one image per ``__getitem__``
  (torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` when torchvision is
  installed, the same operations in torch otherwise), a ``DataLoader`` with worker processes and
  pinned memory collates the batches, and each batch is copied to the device.
* ``TunedLoop``: the least a loop can do. Data on the device, order and augmentation drawn on the
  device, augmentation as two gathers over the whole batch, autocast, channels-last, no host
  synchronization until the epoch's end.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from paitune.training.augment import CropFlip
from paitune.training.modes import autocast, grad_scaler, to_layout


def _masked(model, masks):
    params = dict(model.named_parameters())
    names = [n for n, m in masks.items() if not bool(m.all())]
    return [params[n] for n in names], [torch.empty_like(params[n]).copy_(masks[n]) for n in names]


def _sgd(model, lr: float):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _CropFlipImages(Dataset):
    """One image at a time, as a torchvision dataset with ``transform`` serves it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        if importlib.util.find_spec("torchvision") is not None:
            from torchvision import transforms

            self.transform = transforms.Compose(
                [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
            )
        else:
            self.transform = self._crop_flip

    @staticmethod
    def _crop_flip(img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        i, j = (int(v) for v in torch.randint(0, 9, (2,)))
        crop = F.pad(img, (4, 4, 4, 4))[:, i : i + h, j : j + w]
        return crop.flip(-1) if bool(torch.rand(()) < 0.5) else crop

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int):
        return self.transform(self.x[index]), self.y[index]


class _MaskedLoop:
    """What both loops share: the masked model on the device in its layout, SGD, the grad scaler
    fp16 needs, and one masked step."""

    def __init__(self, model, masks, *, precision, channels_last, device, lr, compile=False):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if compile else self.model
        self.params, self.factors = _masked(self.model, masks)
        self.optimizer = _sgd(self.model, lr)
        self.scaler = grad_scaler(self.device, precision)
        self.precision, self.channels_last = precision, channels_last

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One masked SGD step; returns the batch's loss (on the device, not synchronized)."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            logits = self.forward(xb)
        loss = F.cross_entropy(logits.float(), yb)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        with torch.no_grad():
            torch._foreach_mul_(self.params, self.factors)
        return loss.detach()


class DataLoaderLoop(_MaskedLoop):
    def __init__(self, model, masks, x, y, *, batch_size, precision, channels_last, device, workers, lr=0.1,
                 compile=False):  # fmt: skip
        super().__init__(model, masks, precision=precision, channels_last=channels_last, device=device, lr=lr,
                         compile=compile)  # fmt: skip
        pin = self.device.type == "cuda"
        self.loader = DataLoader(_CropFlipImages(x.cpu(), y.cpu()), batch_size=batch_size, shuffle=True,
                                 num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)  # fmt: skip

    def run_epoch(self) -> float:
        self.model.train()
        total = torch.zeros((), device=self.device)
        for xb, yb in self.loader:
            xb = to_layout(xb.to(self.device, non_blocking=True), self.channels_last)
            yb = yb.to(self.device, non_blocking=True)
            total += self.step(xb, yb)
        _sync(self.device)
        return float(total)


class TunedLoop(_MaskedLoop):
    def __init__(self, model, masks, x, y, *, batch_size, precision, channels_last, device, lr=0.1, compile=False):
        super().__init__(model, masks, precision=precision, channels_last=channels_last, device=device, lr=lr,
                         compile=compile)  # fmt: skip
        self.x, self.y = to_layout(x.to(self.device), channels_last), y.to(self.device)
        self.batch_size = batch_size
        self.crop = CropFlip()

    def run_epoch(self) -> float:
        self.model.train()
        n, device = self.x.shape[0], self.device
        order = torch.randperm(n, device=device)
        top, left = torch.randint(0, 9, (2, n), device=device)
        flip = torch.rand(n, device=device) < 0.5
        total = torch.zeros((), device=device)
        for b in range(0, n, self.batch_size):
            idx, s = order[b : b + self.batch_size], slice(b, b + self.batch_size)
            xb = to_layout(self.crop.apply(self.x[idx], top[s], left[s], flip[s]), self.channels_last)
            total += self.step(xb, self.y[idx])
        _sync(device)
        return float(total)
