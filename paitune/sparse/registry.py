"""One place that turns a resolved trial config with a sparse method into a ready-to-run trainer.

``build_sparse_trial`` returns the trainer (``Trainer`` or ``IMPTrainer``: both have ``run_epoch``,
``epoch``, ``total_epochs``, ``state_dict``/``load_state_dict``), the mask at the start of training
(what the trial reports before training) and a function giving the mask now (what it reports at
the end). ``model`` is the plain network; its parameter names key every mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from ..config import method_options
from ..errors import unknown_choice
from ..pruning import Masks, apply_masks, prune
from ..training import TrainConfig, Trainer
from .config import DST_METHODS, SPARSE_METHODS
from .dst import MaskUpdater
from .edge_popup import EdgePopupNet
from .imp import IMPTrainer

# Salts that give each method's own random stream from the trial seed, independent of the model's
# init and the PaI scoring streams.
_SALT = {"set": 11, "rigl": 11, "edge_popup": 13}


def _derived_seed(seed: int, method: str) -> int:
    return (int(seed) * 1_000_003 + _SALT[method]) % (2**63)


@dataclass
class SparseSetup:
    trainer: object  # Trainer | IMPTrainer
    masks: Masks  # the mask training starts from
    current_masks: Callable[[], Masks]  # the mask now; after the last epoch, the final mask
    facts: dict = field(default_factory=dict)  # known before training (e.g. imp_rounds)
    progress: Callable[[], dict] = dict  # counters that grow with training (e.g. DST updates)


def prune_from_config(model: nn.Module, cfg: Mapping, batches: Sequence, *, method: str) -> Masks:
    """``prune`` with a resolved trial config's settings (the static trials and DST's starting mask)."""
    return prune(
        model,
        method,
        sparsity=float(cfg["sparsity"]),
        allocation=cfg["allocation"],
        batches=batches,
        iterations=None if cfg["iterations"] is None else int(cfg["iterations"]),
        schedule=cfg["schedule"],
        control=cfg["control"],
        seed=int(cfg["seed"]),
        method_options=method_options(cfg, method),
    )


def _dynamic(cfg: Mapping, model: nn.Module, data, batches: Sequence, train: TrainConfig, device, masks) -> SparseSetup:
    masks = Masks(masks) if masks is not None else prune_from_config(model, cfg, batches, method=cfg["init_method"])
    masks.meta.update(method=cfg["method"], init_method=cfg["init_method"])
    apply_masks(model, masks)
    steps_per_epoch = math.ceil(data.train.y.shape[0] / train.batch_size)
    updater = MaskUpdater(
        cfg["method"],
        total_steps=train.epochs * steps_per_epoch,
        update_interval=int(cfg["update_interval"]),
        drop_fraction=float(cfg["drop_fraction"]),
        drop_schedule=cfg["drop_schedule"],
        drop_until=float(cfg["drop_until"]),
        seed=_derived_seed(cfg["seed"], cfg["method"]),
    )
    trainer = Trainer(model, masks, data, train, device=device, step_hook=updater)
    return SparseSetup(
        trainer, masks, lambda: trainer.masks,
        progress=lambda: {"dst_updates": updater.updates, "dst_moved": updater.moved},
    )  # fmt: skip


def _lottery(
    cfg: Mapping, model: nn.Module, data, batches: Sequence, train: TrainConfig, device, _masks
) -> SparseSetup:
    trainer = IMPTrainer(
        model,
        data,
        train,
        sparsity=float(cfg["sparsity"]),
        prune_fraction=float(cfg["imp_prune_fraction"]),
        rewind_epoch=int(cfg["rewind_epoch"]),
        allocation=cfg["allocation"],
        device=device,
    )
    return SparseSetup(
        trainer, trainer.masks, lambda: trainer.masks, facts={"imp_rounds": trainer.rounds},
        progress=lambda: {"imp_round": max(0, trainer.epoch - 1)},
    )  # fmt: skip


def _selection(
    cfg: Mapping, model: nn.Module, data, batches: Sequence, train: TrainConfig, device, _masks
) -> SparseSetup:
    net = EdgePopupNet(
        model,
        sparsity=float(cfg["sparsity"]),
        allocation=cfg["allocation"],
        weight_init=cfg["popup_weight_init"],
        seed=_derived_seed(cfg["seed"], "edge_popup"),
    ).to(device)
    trainer = Trainer(net, None, data, train, device=device)
    return SparseSetup(trainer, net.current_masks(), net.current_masks)


_BUILDERS = {"set": _dynamic, "rigl": _dynamic, "imp": _lottery, "edge_popup": _selection}
assert set(_BUILDERS) == set(SPARSE_METHODS) and set(DST_METHODS) <= set(_BUILDERS)


def build_sparse_trial(
    cfg: Mapping, model: nn.Module, data, batches: Sequence, train: TrainConfig, *, device="cpu", masks=None
) -> SparseSetup:
    """The trainer and masks of a trial whose ``method`` is a sparse method (config already checked).

    ``masks``: DST's starting mask as a checkpoint recorded it, taken instead of scoring its
    ``init_method`` again (``paitune.trial.prepare_trial``). IMP starts dense and edge-popup from
    its seeded scores: neither scores with data, so both build their start as always.
    """
    method = cfg["method"]
    if method not in _BUILDERS:
        raise unknown_choice("sparse method", method, SPARSE_METHODS)
    return _BUILDERS[method](cfg, model, data, batches, train, device, masks)
