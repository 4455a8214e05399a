"""One trial without Ray: resolve its config, load data, build, prune, score proxies, set up training.

The Ray trial function and the sequential benchmark floor both call ``prepare_trial``, so a trial
computes the same thing with or without Ray. Nothing here imports Ray or Optuna.

A trial config is a flat dict of resolved values. ``resolve_config`` fills every default and rejects
unknown keys, so the config recorded with each result (and its ``config_hash``) is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..data import DATASETS, load_dataset, scoring_batches
from ..errors import PaituneError, unknown_choice
from ..models import MODELS, build_model
from ..proxies import PROXIES, compute_proxies
from ..pruning import CONTROLS, METHODS, MaskReport, Masks, apply_masks, mask_hash, mask_report, prune
from ..training import Trainer, TrainConfig

# Every key a trial config may hold, with its default. ``iterations: None`` means the method's own
# default (100 for synflow, iterative_snip and force; 1 otherwise).
TRIAL_DEFAULTS: dict = {
    "dataset": "digits",
    "data_root": None,
    "synthetic_shape": [3, 32, 32],
    "synthetic_classes": 10,
    "model": "mlp",
    "method": "random",
    "sparsity": 0.9,
    "allocation": "global",
    "control": "none",
    "iterations": None,
    "schedule": "exponential",
    "prune_batches": 1,
    "prune_batch_size": 256,
    "seed": 0,
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_schedule": "cosine",
    "proxies": [],
}


def resolve_config(config: Mapping) -> dict:
    """The full trial config: defaults filled in, unknown keys and bad names rejected."""
    unknown = sorted(set(config) - set(TRIAL_DEFAULTS))
    if unknown:
        raise PaituneError(f"unknown trial config keys {unknown}; valid keys: {', '.join(TRIAL_DEFAULTS)}")
    resolved = {**TRIAL_DEFAULTS, **dict(config)}
    for key, choices in (("dataset", DATASETS), ("model", MODELS), ("method", METHODS), ("control", CONTROLS)):
        if resolved[key] not in choices:
            raise unknown_choice(key.replace("method", "pruning method"), resolved[key], choices)
    proxies = resolved["proxies"]
    if isinstance(proxies, str):
        proxies = [proxies] if proxies else []
    for name in proxies:
        if name not in PROXIES:
            raise unknown_choice("proxy", name, PROXIES)
    resolved["proxies"] = list(proxies)
    return resolved


def config_hash(config: Mapping) -> str:
    """sha256 of the canonical JSON of the config (sorted keys), first 16 hex characters."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def train_config(config: Mapping) -> TrainConfig:
    return TrainConfig(
        epochs=int(config["epochs"]),
        batch_size=int(config["batch_size"]),
        optimizer=config["optimizer"],
        lr=float(config["lr"]),
        momentum=float(config["momentum"]),
        weight_decay=float(config["weight_decay"]),
        lr_schedule=config["lr_schedule"],
        seed=int(config["seed"]),
    )


@dataclass
class PreparedTrial:
    config: dict
    data: object
    model: torch.nn.Module
    masks: Masks
    report: MaskReport
    proxies: dict
    prune_seconds: float
    trainer: Trainer
    mask_hash: str

    def prune_facts(self) -> dict:
        """What a trial reports about its mask once, before training (flat, JSON-friendly)."""
        facts = {
            "density_achieved": self.report.density,
            "params_kept": self.report.params_kept,
            "params_total": self.report.params_total,
            "flops_dense": self.report.flops_dense,
            "flops_sparse": self.report.flops_sparse,
            "collapsed": self.report.collapsed,
            "mask_hash": self.mask_hash,
            "prune_seconds": self.prune_seconds,
            "layer_densities": {layer.name: layer.density for layer in self.report.layers},
            "layer_shapes": {layer.name: list(layer.shape) for layer in self.report.layers},
        }
        for name, value in self.proxies.items():
            facts[f"proxy_{name}"] = value if math.isfinite(value) else float("nan")
        return facts


def prepare_trial(config: Mapping, *, device="cpu") -> PreparedTrial:
    """Everything up to the first training epoch; ``trainer.run_epoch()`` takes it from there."""
    cfg = resolve_config(config)
    seed = int(cfg["seed"])
    data = load_dataset(
        cfg["dataset"],
        data_root=cfg["data_root"],
        synthetic_shape=tuple(cfg["synthetic_shape"]),
        synthetic_classes=int(cfg["synthetic_classes"]),
    )
    model = build_model(cfg["model"], data.input_shape, data.num_classes, seed=seed).to(device)
    batches = scoring_batches(data, int(cfg["prune_batches"]), int(cfg["prune_batch_size"]), seed=seed)
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    start = time.perf_counter()
    masks = prune(
        model,
        cfg["method"],
        sparsity=float(cfg["sparsity"]),
        allocation=cfg["allocation"],
        batches=batches,
        iterations=None if cfg["iterations"] is None else int(cfg["iterations"]),
        schedule=cfg["schedule"],
        control=cfg["control"],
        seed=seed,
    )
    prune_seconds = time.perf_counter() - start
    apply_masks(model, masks)  # reinit's fresh weights are loaded here, so proxies see them too
    report = mask_report(model, masks, data.input_shape)
    proxies = compute_proxies(model, batches[0], cfg["proxies"], masks=masks) if cfg["proxies"] else {}
    trainer = Trainer(model, masks, data, train_config(cfg), device=device)
    return PreparedTrial(cfg, data, model, masks, report, proxies, prune_seconds, trainer, mask_hash(masks))
