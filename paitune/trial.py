"""One trial without Ray: resolve its config, load data, build, prune, score proxies, set up training.

The Ray trial function and the sequential benchmark floor both call ``prepare_trial``, so a trial
computes the same thing with or without Ray. Nothing here imports Ray or Optuna.

A trial config is a flat dict of resolved values. ``resolve_config`` fills every default and rejects
unknown keys and bad values, so the config recorded with each result (and its ``config_hash``) is
complete.

The ``method`` axis also takes the sparse methods of ``paitune.sparse`` (set, rigl, imp, edge_popup);
their extra options (``SPARSE_DEFAULTS``) are in every config. A sparse trial's trainer
may change its mask while training (or, for IMP, run one whole round per ``run_epoch``): ``report``
and ``mask_hash`` describe the mask training starts from, ``final_facts()`` the mask now, and
``trainer.total_epochs`` is the number of ``run_epoch`` calls of the whole run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from .config import method_options
from .config import resolve_config as resolve_options
from .data import load_dataset, scoring_batches
from .models import build_model
from .plugins import load_plugins
from .proxies import compute_proxies
from .proxies.activation import check_swap_settings
from .pruning import MaskReport, Masks, apply_masks, check_choices, mask_hash, mask_report
from .pruning.registry import method_names
from .sparse import SPARSE_METHODS, build_sparse_trial, check_sparse_config
from .sparse.config import pai_method
from .sparse.registry import prune_from_config
from .training import TrainConfig, Trainer, check_training_config


def resolve_config(config: Mapping) -> dict:
    """The full trial config (``paitune.config.resolve_config``) and the rules that span its keys."""
    resolved = check_sparse_config(resolve_options(config))
    check_training_config(resolved)
    if "swap_reg" in resolved["proxies"]:
        check_swap_settings(resolved["swap_mu"], resolved["swap_sigma"])
    _check_method_choices(resolved)
    return resolved


def _check_method_choices(cfg: dict) -> None:
    """The PaI method's own rules (its options; PHEW's global-only mask), before anything runs."""
    method = pai_method(cfg)
    if method not in method_names():
        return  # imp, edge_popup: no PaI mask
    check_choices(
        method, allocation=cfg["allocation"], control=cfg["control"], iterations=cfg["iterations"],
        method_options=method_options(cfg, method), sparsity=cfg["sparsity"],
    )  # fmt: skip


def train_config(config: Mapping) -> TrainConfig:
    return TrainConfig.from_trial_config(config)


@dataclass
class PreparedTrial:
    config: dict
    data: object
    model: torch.nn.Module
    masks: Masks
    report: MaskReport
    proxies: dict
    prune_seconds: float
    trainer: Trainer  # or paitune.sparse.IMPTrainer (same interface)
    mask_hash: str  # of the starting mask
    method_facts: dict = field(default_factory=dict)  # sparse methods: known before training (imp_rounds)
    current_masks: Callable[[], Masks] | None = None  # sparse methods: the mask now (None: static)
    method_progress: Callable[[], dict] = dict  # sparse methods: counters that grow with training

    def masks_now(self) -> Masks:
        """The mask the model uses now: the final mask once training is done."""
        return self.current_masks() if self.current_masks is not None else self.masks

    def final_facts(self) -> dict:
        """The mask facts of ``masks_now()`` (for the trial's last row and its layers table).

        For the static methods they equal the prune facts; DST, IMP and edge-popup change the mask.
        """
        masks = self.masks_now()
        report = mask_report(self.model, masks, self.data.input_shape)
        return {
            "density_achieved": report.density,
            "params_kept": report.params_kept,
            "params_total": report.params_total,
            "flops_dense": report.flops_dense,
            "flops_sparse": report.flops_sparse,
            "collapsed": report.collapsed,
            "mask_hash": mask_hash(masks),
            "layer_densities": {layer.name: layer.density for layer in report.layers},
            "layer_shapes": {layer.name: list(layer.shape) for layer in report.layers},
            **self.method_progress(),
        }

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
        facts.update(self.method_facts)
        return facts


def prepare_trial(config: Mapping, *, device="cpu", masks: Mapping[str, torch.Tensor] | None = None) -> PreparedTrial:
    """Everything up to the first training epoch; ``trainer.run_epoch()`` takes it from there.

    ``masks``: the starting mask a checkpoint of this trial trained under. Given, nothing is
    scored: the mask is taken as it is (no pruning, no proxies: ``proxies`` is empty and
    ``prune_seconds`` 0; the checkpoint holds what the first start measured). A retry must train
    under the mask its checkpointed weights were trained under, and scoring again need not give it
    back: on a GPU, atomic-add kernels (cuDNN's weight gradients, adaptive pooling's backward) make
    scores differ in their last bits between runs, enough to swap two weights at the threshold.
    """
    load_plugins()  # in a Ray worker, the plug-ins' names exist only once they are imported here
    cfg = resolve_config(config)
    seed = int(cfg["seed"])
    data = load_dataset(
        cfg["dataset"],
        data_root=cfg["data_root"],
        synthetic_shape=tuple(cfg["synthetic_shape"]),
        synthetic_classes=int(cfg["synthetic_classes"]),
    )
    model = build_model(cfg["model"], data.input_shape, data.num_classes, seed=seed).to(device)
    given = None if masks is None else Masks({name: m.to(device, torch.bool) for name, m in masks.items()})
    batches = []  # only scoring and proxies read them, and a given mask needs neither
    if given is None:
        batches = scoring_batches(data, int(cfg["prune_batches"]), int(cfg["prune_batch_size"]), seed=seed)
        batches = [(x.to(device), y.to(device)) for x, y in batches]
    if cfg["method"] in SPARSE_METHODS:
        return _prepare_sparse(cfg, data, model, batches, device, given)
    start = time.perf_counter()
    masks = given if given is not None else prune_from_config(model, cfg, batches, method=cfg["method"])
    prune_seconds = time.perf_counter() - start if given is None else 0.0
    apply_masks(model, masks)  # reinit's fresh weights are loaded here, so proxies see them too
    report = mask_report(model, masks, data.input_shape)
    proxies = _proxies(cfg, model, batches[0], masks) if given is None else {}
    trainer = Trainer(model, masks, data, train_config(cfg), device=device)
    return PreparedTrial(cfg, data, model, masks, report, proxies, prune_seconds, trainer, mask_hash(masks))


def _proxies(cfg: dict, model, batch, masks) -> dict:
    if not cfg["proxies"]:
        return {}
    return compute_proxies(
        model, batch, cfg["proxies"], masks=masks, swap_mu=cfg["swap_mu"], swap_sigma=cfg["swap_sigma"]
    )


def _prepare_sparse(
    cfg: dict, data, model: torch.nn.Module, batches: list, device, given: Masks | None
) -> PreparedTrial:
    """A sparse method's trial: its trainer and starting mask come from ``paitune.sparse``."""
    start = time.perf_counter()
    setup = build_sparse_trial(cfg, model, data, batches, train_config(cfg), device=device, masks=given)
    # the starting mask (DST's PaI prune; edge-popup's scores)
    prune_seconds = time.perf_counter() - start if given is None else 0.0
    masks = setup.masks
    report = mask_report(model, masks, data.input_shape)
    proxies = _proxies(cfg, model, batches[0], masks) if given is None else {}
    return PreparedTrial(
        cfg, data, model, masks, report, proxies, prune_seconds, setup.trainer, mask_hash(masks),
        method_facts=dict(setup.facts), current_masks=setup.current_masks, method_progress=setup.progress,
    )  # fmt: skip
