"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

Round 0 trains the dense network for ``epochs`` epochs, remembering the weights and the LR schedule
at epoch ``rewind_epoch`` (0 = the initialization). Each later round prunes
``prune_fraction`` of the remaining weights with the smallest |w| (ranked globally by default),
rewinds the survivors to that state and trains the remaining ``epochs - rewind_epoch`` epochs.

Rounds are derived from the target: R = ceil(log(1 - s) / log(1 - p)) pruning rounds, round r < R
training at density (1 - p)^r and the last one at exactly 1 - s (it prunes less than p when s is not
a power of 1 - p). So the run is R + 1 trainings.

The budget unit is a round: ``run_epoch`` runs a whole round and returns its final epoch's metrics
(a ``RoundMetrics``, ``epoch`` = round + 1), so a scheduler such as ASHA can only stop a trial
between rounds; ``total_epochs`` is R + 1. The data order keeps running across rounds (each round
sees fresh shuffles); only the model and the schedule are rewound, and the optimizer starts each
round afresh (no momentum carried over), as in open_lth.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PaituneError
from ..pruning import Masks, prunable_parameters
from ..pruning.allocation import check_sparsity
from ..training import Diverged, EpochMetrics, TrainConfig, Trainer
from .selection import global_top_k, keep_counts, layer_densities, magnitude_normalizer, top_k_mask

# Rounding slack for R = ceil(log(1-s)/log(1-p)): s = 1 - 0.8^2 must give 2 rounds, not 3.
_ROUNDS_EPS = 1e-9


def imp_densities(sparsity: float, prune_fraction: float = 0.2) -> list[float]:
    """Density trained in each round: [1, (1-p), (1-p)^2, ..., 1-s] (R + 1 entries)."""
    s = check_sparsity(sparsity)
    p = float(prune_fraction)
    if not 0.0 < p < 1.0:
        raise PaituneError(f"imp_prune_fraction must be in (0, 1), got {p}")
    if s == 0.0:
        return [1.0]
    rounds = max(1, math.ceil(math.log1p(-s) / math.log1p(-p) - _ROUNDS_EPS))
    return [(1.0 - p) ** r for r in range(rounds)] + [1.0 - s]


@dataclass
class RoundMetrics(EpochMetrics):
    """A round's last-epoch metrics; ``seconds`` is the whole round's time."""

    round: int = 0  # pruning rounds applied before this training (0 = the dense run)
    density: float = 1.0  # the round's overall density
    epochs_trained: int = 0  # epochs trained in this round


class IMPTrainer:
    """IMP with rewinding behind the ``Trainer`` interface (``run_epoch`` = one round)."""

    def __init__(
        self,
        model: nn.Module,
        data,
        config: TrainConfig,
        *,
        sparsity: float,
        prune_fraction: float = 0.2,
        rewind_epoch: int = 0,
        allocation="global",
        device="cpu",
    ):
        if not 0 <= int(rewind_epoch) < int(config.epochs):
            raise PaituneError(f"rewind_epoch must be in [0, epochs) = [0, {config.epochs}), got {rewind_epoch}")
        self.model = model
        self.data = data
        self.config = config
        self.device = torch.device(device)
        self.sparsity = check_sparsity(sparsity)
        self.prune_fraction = float(prune_fraction)
        self.rewind_epoch = int(rewind_epoch)
        self.allocation = allocation
        self.densities = imp_densities(self.sparsity, self.prune_fraction)
        shapes = {name: tuple(p.shape) for name, p in prunable_parameters(model).items()}
        self._shapes = shapes
        # Fixed allocations fix every layer's density at the target; the rounds interpolate to it.
        self._final_layer_densities = layer_densities(shapes, self.sparsity, allocation)
        self.masks = Masks({n: torch.ones(s, dtype=torch.bool, device=self.device) for n, s in shapes.items()},
                           meta=self._meta())  # fmt: skip
        self.trainer = Trainer(model, None, data, config, device=device)
        self.rewind_state: dict | None = None
        self.epoch = 0  # rounds done
        self.history: list[RoundMetrics] = []

    @property
    def rounds(self) -> int:
        """Pruning rounds (R); the run trains R + 1 times."""
        return len(self.densities) - 1

    @property
    def total_epochs(self) -> int:
        return len(self.densities)

    def _meta(self) -> dict:
        return {"method": "imp", "sparsity": self.sparsity, "allocation": self.allocation,
                "prune_fraction": self.prune_fraction, "rewind_epoch": self.rewind_epoch,
                "rounds": len(self.densities) - 1}  # fmt: skip

    def _snapshot(self) -> dict:
        state = self.trainer.state_dict()
        return copy.deepcopy({key: state[key] for key in ("model", "optimizer", "scheduler")})

    def run_epoch(self) -> RoundMetrics:
        if self.epoch >= self.total_epochs:
            raise PaituneError(f"IMP has run all its {self.total_epochs} rounds")
        start = time.perf_counter()
        round_index = self.epoch
        if round_index == 0:
            if self.rewind_epoch == 0:
                self.rewind_state = self._snapshot()
        else:
            self.prune_and_rewind(self.densities[round_index])
        inner = self.trainer
        try:
            while inner.epoch < self.config.epochs:
                inner.run_epoch()
                if round_index == 0 and inner.epoch == self.rewind_epoch:
                    self.rewind_state = self._snapshot()
        except Diverged:
            raise Diverged(round_index + 1, self.history[-1] if self.history else None) from None
        last = inner.history[-1]
        metrics = RoundMetrics(
            epoch=round_index + 1,
            train_loss=last.train_loss,
            val_loss=last.val_loss,
            val_acc=last.val_acc,
            test_acc=last.test_acc,
            seconds=time.perf_counter() - start,
            round=round_index,
            density=self.masks.density(),
            epochs_trained=len(inner.history),  # epochs - rewind_epoch after round 0
        )
        self.epoch += 1
        self.history.append(metrics)
        return metrics

    def _round_layer_densities(self, density: float) -> dict[str, float] | None:
        if self._final_layer_densities is None:
            return None
        if isinstance(self.allocation, str):  # a scheme: itself at the round's sparsity
            return layer_densities(self._shapes, 1.0 - density, self.allocation)
        # An explicit map has no intermediate version: interpolate each layer geometrically.
        final = 1.0 - self.sparsity
        t = math.log(density) / math.log(final)
        return {name: d**t if d > 0 else 0.0 for name, d in self._final_layer_densities.items()}

    @torch.no_grad()
    def next_masks(self, density: float) -> Masks:
        """The trained net's masks pruned to ``density``: smallest |w| among the surviving weights."""
        params = prunable_parameters(self.model)
        magnitudes = {name: params[name].detach().abs() for name in self.masks}
        sizes = {name: m.numel() for name, m in self.masks.items()}
        per_layer = self._round_layer_densities(density)
        if per_layer is None:
            normalize = magnitude_normalizer(self.allocation)
            if normalize is not None:
                magnitudes = normalize({name: v * self.masks[name] for name, v in magnitudes.items()})
            keep = int(round(density * sum(sizes.values())))
            new = global_top_k(magnitudes, keep, self.masks)
        else:
            counts = keep_counts(sizes, per_layer)
            new = {name: top_k_mask(magnitudes[name], counts[name], self.masks[name]) for name in self.masks}
        return Masks(new, meta=self._meta())

    def prune_and_rewind(self, density: float) -> None:
        """The step between rounds (``run_epoch`` takes it): prune the trained net to ``density``,
        rewind the survivors (and the LR schedule) to the rewind point, with a fresh optimizer state."""
        self.masks = self.next_masks(density)
        generator_state = self.trainer.generator.get_state()
        self.model.load_state_dict(self.rewind_state["model"])
        # A new Trainer applies the masks to the rewound weights and enforces them from now on.
        self.trainer = Trainer(self.model, self.masks, self.data, self.config, device=self.device)
        # The weights and the learning-rate schedule are rewound, the optimizer's memory is not: the
        # round starts with fresh momentum (or Adam moments), as open_lth builds a new optimizer
        # and steps only its schedule to the rewind point. The loaded groups carry that point's LR.
        self.trainer.optimizer.load_state_dict(self.rewind_state["optimizer"])
        self.trainer.optimizer.state.clear()
        self.trainer.scheduler.load_state_dict(self.rewind_state["scheduler"])
        self.trainer.epoch = self.rewind_epoch
        self.trainer.generator.set_state(generator_state)

    def state_dict(self) -> dict:
        return {
            "round": self.epoch,
            "masks": {name: m.detach().clone() for name, m in self.masks.items()},
            "rewind": self.rewind_state,
            "trainer": self.trainer.state_dict(),
            "history": [m.to_dict() for m in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["round"])
        self.masks = Masks({n: m.to(self.device, torch.bool) for n, m in state["masks"].items()}, meta=self._meta())
        self.rewind_state = state["rewind"]
        dense = all(bool(m.all()) for m in self.masks.values())
        self.trainer = Trainer(self.model, None if dense else self.masks, self.data, self.config, device=self.device)
        self.trainer.load_state_dict(state["trainer"])
        self.history = [RoundMetrics(**m) for m in state.get("history", [])]
