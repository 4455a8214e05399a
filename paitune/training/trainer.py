"""The masked training loop: one epoch at a time, so a caller (a Ray trial) can report and checkpoint.

Data splits stay as tensors on the trial's device (no DataLoader round trips for small datasets);
mini-batches are drawn with a seeded CPU generator, so a fixed seed gives the same run on the CPU.
Pruned weights are kept at exactly zero by a ``MaskEnforcer`` hooked to the optimizer step.

Masks are static unless a *step hook* changes them: ``Trainer(..., step_hook=hook)`` calls
``hook(trainer)`` after every optimizer step (the weights already re-masked, this batch's gradients
still in ``.grad``); the hook may call ``trainer.set_masks`` (dynamic sparse training). Without a
hook the loop is the static one (one ``is None`` test per step). A hook with ``state_dict`` /
``load_state_dict`` has its state saved in the trainer's, and masks replaced by ``set_masks`` are
saved too, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TRIAL_OPTIONS, check_value, component_defaults
from ..pruning import MaskEnforcer, Masks, apply_masks

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "step", "constant")


_DEFAULTS = {**component_defaults("training"), **component_defaults("run")}


@dataclass
class TrainConfig:
    """The training component of a trial config (``paitune.config``, component ``training``), the
    run's seed, and the evaluation batch size; defaults and checks come from the declared options."""

    epochs: int = _DEFAULTS["epochs"]
    batch_size: int = _DEFAULTS["batch_size"]
    optimizer: str = _DEFAULTS["optimizer"]
    lr: float = _DEFAULTS["lr"]
    momentum: float = _DEFAULTS["momentum"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    lr_schedule: str = _DEFAULTS["lr_schedule"]
    step_size: int | None = _DEFAULTS["step_size"]
    gamma: float = _DEFAULTS["gamma"]
    seed: int = _DEFAULTS["seed"]
    eval_batch_size: int = 1024  # memory, not results: not a trial option

    def __post_init__(self):
        for name in _DEFAULTS:
            check_value(TRIAL_OPTIONS[name], getattr(self, name))

    @classmethod
    def from_trial_config(cls, config: Mapping) -> TrainConfig:
        return cls(**{name: config[name] for name in _DEFAULTS})


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_acc: float
    test_acc: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class StepHook(Protocol):
    """Called as ``hook(trainer)`` after every optimizer step; optionally has ``state_dict()`` and
    ``load_state_dict(state)`` (saved in and restored from the trainer's state)."""

    def __call__(self, trainer: "Trainer") -> None: ...


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; ``last`` holds the last good epoch's metrics."""

    def __init__(self, epoch: int, last: EpochMetrics | None):
        super().__init__(f"training diverged at epoch {epoch} (loss is NaN or infinite)")
        self.epoch = epoch
        self.last = last


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.lr_schedule == "step":
        step = cfg.step_size or max(1, cfg.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    n = max(1, x.shape[0])
    return float(loss_sum) / n, float(correct) / n


class Trainer:
    """Trains a pruned model epoch by epoch; ``state_dict`` is everything needed to resume."""

    def __init__(
        self,
        model: nn.Module,
        masks: Mapping[str, torch.Tensor] | None,
        data,
        config: TrainConfig,
        *,
        device="cpu",
        step_hook: StepHook | None = None,
    ):
        self.device = torch.device(device)
        self.config = config
        self.model = model.to(self.device)
        self.masks = masks
        if masks:
            apply_masks(self.model, masks)
        self.data = data
        # Whole splits on the device once; each epoch only indexes them.
        self._train = (data.train.x.to(self.device), data.train.y.to(self.device))
        self._val = (data.val.x.to(self.device), data.val.y.to(self.device))
        self._test = (data.test.x.to(self.device), data.test.y.to(self.device))
        self.optimizer = _optimizer(self.model, config)
        self.scheduler = _scheduler(self.optimizer, config)
        self.enforcer = MaskEnforcer(self.model, masks).attach(self.optimizer) if masks else None
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.step_hook = step_hook
        self._masks_replaced = False  # masks in the state dict only once they differ from the initial ones
        self.epoch = 0
        self.history: list[EpochMetrics] = []

    @property
    def total_epochs(self) -> int:
        """Reporting units (``run_epoch`` calls) of the whole run: the budget a scheduler sees."""
        return int(self.config.epochs)

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Replace the masks mid-training: newly pruned weights are zeroed and kept at zero from now on."""
        masks = Masks({name: m.to(self.device, torch.bool) for name, m in masks.items()},
                      meta=getattr(self.masks, "meta", None))  # fmt: skip
        if self.enforcer is not None:
            self.enforcer.detach()
        apply_masks(self.model, masks)  # a plain Masks: never reloads a control's fresh weights
        self.enforcer = MaskEnforcer(self.model, masks).attach(self.optimizer)
        self.masks = masks
        self._masks_replaced = True

    def run_epoch(self) -> EpochMetrics:
        start = time.perf_counter()
        cfg = self.config
        x, y = self._train
        hook = self.step_hook
        self.model.train()
        order = torch.randperm(x.shape[0], generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for begin in range(0, x.shape[0], cfg.batch_size):
            idx = order[begin : begin + cfg.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(x[idx]), y[idx])
            loss.backward()
            self.optimizer.step()
            if hook is not None:
                hook(self)
            loss_sum += loss.detach().double() * idx.numel()
        self.scheduler.step()
        train_loss = float(loss_sum) / max(1, x.shape[0])
        if not math.isfinite(train_loss):
            raise Diverged(self.epoch + 1, self.history[-1] if self.history else None)
        val_loss, val_acc = evaluate(self.model, *self._val, cfg.eval_batch_size)
        _, test_acc = evaluate(self.model, *self._test, cfg.eval_batch_size)
        self.epoch += 1
        metrics = EpochMetrics(self.epoch, train_loss, val_loss, val_acc, test_acc, time.perf_counter() - start)
        self.history.append(metrics)
        return metrics

    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "history": [m.to_dict() for m in self.history],
        }
        if self._masks_replaced:
            state["masks"] = {name: m.detach().clone() for name, m in self.masks.items()}
        if self.step_hook is not None and hasattr(self.step_hook, "state_dict"):
            state["step_hook"] = self.step_hook.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if "masks" in state:
            self.set_masks(state["masks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
        self.history = [EpochMetrics(**m) for m in state.get("history", [])]
        if "step_hook" in state and self.step_hook is not None:
            self.step_hook.load_state_dict(state["step_hook"])


def train(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None,
    data,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    device="cpu",
) -> list[EpochMetrics]:
    """Train for ``config.epochs``; ``on_epoch`` is called after each epoch and may return False to stop."""
    trainer = Trainer(model, masks, data, config, device=device)
    while trainer.epoch < config.epochs:
        metrics = trainer.run_epoch()
        if on_epoch is not None and on_epoch(metrics) is False:
            break
    return trainer.history
