"""The masked training loop: one epoch at a time, so a caller (a Ray trial) can report and checkpoint.

Data splits stay as tensors on the trial's device (no DataLoader round trips for small datasets);
mini-batches are drawn with a seeded CPU generator, so a fixed seed gives the same run on the CPU.
Pruned weights are kept at exactly zero by a ``MaskEnforcer`` hooked to the optimizer step.

Masks are static unless a *step hook* changes them: ``Trainer(..., step_hook=hook)`` calls
``hook(trainer)`` after every optimizer step (the weights already re-masked, this batch's gradients
still in ``.grad``; a step fp16's loss scaler skips for overflowed gradients is no step); the hook
may call ``trainer.set_masks`` (dynamic sparse training). Without a hook the loop is the static
one (one ``is None`` test per step). A hook with ``state_dict`` / ``load_state_dict`` has its state
saved in the trainer's, and masks replaced by ``set_masks`` are saved too, so a resumed run
continues exactly.

Training modes (``TrainConfig``): ``augment`` (``paitune.training.augment``: crop and flip on the
device, per batch, from a seeded generator of its own), ``precision`` / ``channels_last`` /
``compile`` (``paitune.training.modes``; the weights stay float32, so masks hold exactly in every
mode) and ``eval_every``: val and test are measured at every ``eval_every``-th epoch, at the last
epoch and at the epochs in ``Trainer.eval_epochs`` (a scheduler's decision points); the other
epochs carry NaN for val_loss, val_acc and test_acc. All off (the defaults), an epoch runs the
plain loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TRIAL_OPTIONS, check_value, component_defaults
from ..errors import PaituneError
from ..pruning import MaskEnforcer, Masks, apply_masks
from .augment import Augmenter
from .evaluation import evaluate
from .modes import autocast, compiled_forward, grad_scaler, to_layout

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "step", "multistep", "constant")


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
    nesterov: bool = _DEFAULTS["nesterov"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    lr_schedule: str = _DEFAULTS["lr_schedule"]
    step_size: int | None = _DEFAULTS["step_size"]
    gamma: float = _DEFAULTS["gamma"]
    lr_milestones: list[float] = field(default_factory=lambda: list(_DEFAULTS["lr_milestones"]))
    augment: str = _DEFAULTS["augment"]
    precision: str = _DEFAULTS["precision"]
    channels_last: bool = _DEFAULTS["channels_last"]
    compile: bool = _DEFAULTS["compile"]
    eval_every: int = _DEFAULTS["eval_every"]
    seed: int = _DEFAULTS["seed"]
    eval_batch_size: int = 1024  # memory, not results: not a trial option

    def __post_init__(self):
        for name in _DEFAULTS:
            check_value(TRIAL_OPTIONS[name], getattr(self, name))
        check_training_config(asdict(self))

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
    """Called as ``hook(trainer)`` after every optimizer step taken (not after one fp16's loss scaler
    skipped); optionally has ``state_dict()`` and
    ``load_state_dict(state)`` (saved in and restored from the trainer's state)."""

    def __call__(self, trainer: "Trainer") -> None: ...


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; ``last`` holds the last good epoch's metrics."""

    def __init__(self, epoch: int, last: EpochMetrics | None):
        super().__init__(f"training diverged at epoch {epoch} (loss is NaN or infinite)")
        self.epoch = epoch
        self.last = last


def milestone_epochs(fractions: list[float], epochs: int) -> list[int]:
    """The epochs after which the multistep schedule multiplies the rate by gamma: the whole epochs
    in each fraction of the run (``int(fraction * epochs)``, as GraSP's code computes its
    milestones), at least 1. Milestone m leaves epochs 1..m at the rate before it: the scheduler
    steps once after every epoch."""
    return [max(1, math.floor(fraction * epochs)) for fraction in fractions]


def check_training_config(config: Mapping[str, Any]) -> None:
    """The training rules that span options (a resolved trial config, or a ``TrainConfig``'s
    fields): PaituneError, one line, at the first one broken."""
    if config["nesterov"]:
        if config["optimizer"] != "sgd":
            raise PaituneError(
                f"nesterov applies to the sgd optimizer only, not {config['optimizer']!r}: "
                "set nesterov false or optimizer sgd"
            )
        if config["momentum"] == 0:
            raise PaituneError(
                "nesterov needs momentum > 0 (Nesterov momentum is a form of momentum; torch's SGD refuses it "
                "at momentum 0): set momentum, e.g. 0.9, or nesterov false"
            )
    if config["lr_schedule"] == "multistep":
        fractions, epochs = config["lr_milestones"], int(config["epochs"])
        at = milestone_epochs(fractions, epochs)
        for fraction, epoch in zip(fractions, at):
            if epoch >= epochs:
                raise PaituneError(
                    f"lr_milestones: {fraction:g} of the run falls at epoch {epoch} of {epochs}, the last (the rate "
                    "would change only after training ends): give a smaller fraction or more epochs"
                )
        for i in range(1, len(at)):
            if at[i] == at[i - 1]:
                raise PaituneError(
                    f"lr_milestones {fractions} fall at epochs {at} of {epochs}: {fractions[i - 1]:g} and "
                    f"{fractions[i]:g} are both epoch {at[i]}; give fewer milestones or more epochs"
                )


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)  # fmt: skip
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """Stepped once after every epoch: epoch e (1-based) trains at the rate after e - 1 steps."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.lr_schedule == "step":
        step = cfg.step_size or max(1, cfg.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=cfg.gamma)
    if cfg.lr_schedule == "multistep":
        milestones = milestone_epochs(cfg.lr_milestones, cfg.epochs)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)


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
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.masks = masks
        if masks:
            apply_masks(self.model, masks)
        self.data = data
        # Whole splits on the device once (in the model's layout); each epoch only indexes them.
        self._train, self._val, self._test = (
            (to_layout(split.x.to(self.device), config.channels_last), split.y.to(self.device))
            for split in (data.train, data.val, data.test)
        )
        self.optimizer = _optimizer(self.model, config)
        self.scheduler = _scheduler(self.optimizer, config)
        self.enforcer = MaskEnforcer(self.model, masks).attach(self.optimizer) if masks else None
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.augmenter = Augmenter(
            config.augment, getattr(data, "name", ""), tuple(getattr(data, "input_shape", ())), config.seed
        )
        self.scaler = grad_scaler(self.device, config.precision)
        self.forward = compiled_forward(self.model) if config.compile else self.model
        self.eval_epochs: set[int] = set()  # evaluated besides every eval_every-th and the last
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

    def evaluates(self, epoch: int) -> bool:
        """Whether val and test are measured after ``epoch`` (1-based)."""
        cfg = self.config
        return epoch % cfg.eval_every == 0 or epoch >= cfg.epochs or epoch in self.eval_epochs

    def _plain_steps(self, x, y, order) -> torch.Tensor:
        """The fp32 loop without augmentation: nothing but the masked SGD step."""
        cfg, hook, forward = self.config, self.step_hook, self.forward
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for begin in range(0, x.shape[0], cfg.batch_size):
            idx = order[begin : begin + cfg.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(x[idx]), y[idx])
            loss.backward()
            self.optimizer.step()
            if hook is not None:
                hook(self)
            loss_sum += loss.detach().double() * idx.numel()
        return loss_sum

    def _mode_steps(self, x, y, order) -> torch.Tensor:
        """The loop with augmentation and/or autocast (and a loss scaler for fp16)."""
        cfg, hook, forward, scaler = self.config, self.step_hook, self.forward, self.scaler
        augment, channels_last = self.augmenter, cfg.channels_last
        draws = augment.draw_epoch(x.shape[0], self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for begin in range(0, x.shape[0], cfg.batch_size):
            idx = order[begin : begin + cfg.batch_size]
            batch = to_layout(augment.apply(x[idx], draws, begin), channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, cfg.precision):
                logits = forward(batch)
            loss = F.cross_entropy(logits.float(), y[idx])
            stepped = True
            if scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                scale = scaler.get_scale() if hook is not None else 0.0  # a host sync: only for a hook
                scaler.scale(loss).backward()
                scaler.step(self.optimizer)  # skipped when the gradients overflowed
                scaler.update()
                # The scaler lowers its scale exactly when it skipped the step: no step, no hook
                # (a DST update must not rank overflowed gradients).
                stepped = hook is None or scaler.get_scale() >= scale
            if hook is not None and stepped:
                hook(self)
            loss_sum += loss.detach().double() * idx.numel()
        return loss_sum

    def run_epoch(self) -> EpochMetrics:
        start = time.perf_counter()
        cfg = self.config
        x, y = self._train
        self.model.train()
        order = torch.randperm(x.shape[0], generator=self.generator).to(self.device)
        plain = cfg.precision == "fp32" and not self.augmenter.active
        loss_sum = (self._plain_steps if plain else self._mode_steps)(x, y, order)
        self.scheduler.step()
        train_loss = float(loss_sum) / max(1, x.shape[0])
        if not math.isfinite(train_loss):
            raise Diverged(self.epoch + 1, self.history[-1] if self.history else None)
        val_loss = val_acc = test_acc = math.nan
        if self.evaluates(self.epoch + 1):
            measure = dict(forward=self.forward, precision=cfg.precision)
            val_loss, val_acc = evaluate(self.model, *self._val, cfg.eval_batch_size, **measure)
            _, test_acc = evaluate(self.model, *self._test, cfg.eval_batch_size, **measure)
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
        if self.augmenter.active:
            state["augment"] = self.augmenter.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
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
        if "augment" in state:
            self.augmenter.load_state_dict(state["augment"])
        if "scaler" in state and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
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
