"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020) as a trainer step hook.

Every ``update_interval`` optimizer steps, until ``drop_until`` of the run, each layer drops the
fraction alpha_t of its active weights with the smallest |w| and regrows as many inactive ones: at
random (SET) or where the dense gradient |g| of the current batch is largest (RigL). alpha_t starts
at ``drop_fraction`` and decays (cosine by default) to 0 at ``drop_until``. Each layer keeps its
count of active weights, so the density never moves off the starting mask's.

As in RigL's code (``sparse_optimizers_base``), an update drops floor(alpha_t x active) weights and
regrows as many among every weight it does not keep, the ones it just dropped included: a dropped
weight whose gradient (RigL) or draw (SET) ranks among the largest comes straight back, with its
value and optimizer state, and the update moves fewer connections than it counted. Only weights
that were inactive before the update are new: they start at zero with zero optimizer state
(momentum, Adam moments).

Why the gradient in ``.grad`` is the dense one: pruned weights are held at zero by re-zeroing after
each step (``MaskEnforcer``), not by a mask in the forward pass, so backpropagation computes
dL/dw for every weight, pruned or not.
"""

from __future__ import annotations

import math

import torch

from ..errors import unknown_choice
from ..pruning import Masks, prunable_parameters
from .config import DROP_SCHEDULES
from .selection import top_k_mask

REGROWTH = {"set": "random", "rigl": "gradient"}
# Optimizer state entries that are per-weight tensors (SGD momentum, Adam/AdamW moments).
_PER_WEIGHT_STATE = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def drop_fraction_at(step: int, *, initial: float, end_step: int, schedule: str = "cosine") -> float:
    """alpha_t: the fraction of active weights moved at ``step``; 0 from ``end_step`` on."""
    if schedule not in DROP_SCHEDULES:
        raise unknown_choice("drop_schedule", schedule, DROP_SCHEDULES)
    if step >= end_step:
        return 0.0
    progress = step / end_step
    if schedule == "cosine":
        return initial * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return initial * (1.0 - progress)
    return initial


class MaskUpdater:
    """SET / RigL mask updates, called by ``Trainer`` after every optimizer step.

    ``total_steps``: optimizer steps of the whole run (epochs x batches per epoch); updates stop at
    ``drop_until * total_steps``. ``seed`` drives SET's random regrowth.
    """

    def __init__(
        self,
        method: str,
        *,
        total_steps: int,
        update_interval: int = 100,
        drop_fraction: float = 0.3,
        drop_schedule: str = "cosine",
        drop_until: float = 0.75,
        seed: int = 0,
    ):
        if method not in REGROWTH:
            raise unknown_choice("dynamic sparse training method", method, tuple(REGROWTH))
        if drop_schedule not in DROP_SCHEDULES:
            raise unknown_choice("drop_schedule", drop_schedule, DROP_SCHEDULES)
        self.method = method
        self.regrowth = REGROWTH[method]
        self.update_interval = int(update_interval)
        self.drop_fraction = float(drop_fraction)
        self.drop_schedule = drop_schedule
        self.end_step = int(math.floor(drop_until * total_steps))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.step = 0
        self.updates = 0  # updates that moved at least one weight
        self.moved = 0  # connections regrown over the run

    def __call__(self, trainer) -> None:
        self.step += 1
        if self.step % self.update_interval or self.step >= self.end_step:
            return
        alpha = drop_fraction_at(self.step, initial=self.drop_fraction, end_step=self.end_step,
                                 schedule=self.drop_schedule)  # fmt: skip
        new_masks, grown = self.updated_masks(trainer.model, trainer.masks, alpha)
        if not grown:
            return
        reset_optimizer_state(trainer.optimizer, prunable_parameters(trainer.model), grown)
        trainer.set_masks(new_masks)
        self.updates += 1
        self.moved += sum(int(g.sum()) for g in grown.values())

    @torch.no_grad()
    def updated_masks(self, model, masks, alpha: float) -> tuple[Masks, dict[str, torch.Tensor]]:
        """(new masks, {layer: bool mask of the weights new to the mask}) for one update with drop
        fraction ``alpha``; a layer where none is new is left out.

        New weights are set to zero here; dropped ones are zeroed when the masks are applied.
        """
        params = prunable_parameters(model)
        new, grown = {}, {}
        for name, mask in masks.items():
            weight = params[name]
            active = int(mask.sum())
            count = int(alpha * active)  # RigL: int(n_ones * drop_fraction)
            if count == 0:
                new[name] = mask
                continue
            kept = top_k_mask(weight.abs(), active - count, candidates=mask)
            regrown = top_k_mask(self._growth_scores(weight), count, candidates=~kept)
            fresh = regrown & ~mask  # a dropped weight regrown keeps its value and state
            new[name] = kept | regrown
            if fresh.any():
                weight[fresh] = 0.0
                grown[name] = fresh
        return Masks(new, meta=getattr(masks, "meta", None)), grown

    def _growth_scores(self, weight: torch.Tensor) -> torch.Tensor:
        if self.regrowth == "random":
            return torch.rand(weight.shape, generator=self.generator, dtype=torch.float64).to(weight.device)
        if weight.grad is None:
            raise RuntimeError("RigL regrowth needs this step's gradients: call the updater after backward()")
        return weight.grad.abs()

    def state_dict(self) -> dict:
        return {"step": self.step, "updates": self.updates, "moved": self.moved,
                "generator": self.generator.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.moved = int(state["moved"])
        self.generator.set_state(state["generator"])


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: dict, grown: dict[str, torch.Tensor]) -> None:
    """Zero the per-weight optimizer state (momentum, moments) of the regrown weights."""
    for name, regrown in grown.items():
        state = optimizer.state.get(params[name], {})
        for key in _PER_WEIGHT_STATE:
            buffer = state.get(key)
            if isinstance(buffer, torch.Tensor) and buffer.shape == regrown.shape:
                buffer[regrown] = 0.0
