"""The Tune trial function: prepare (data, model, prune), then train and report its epochs.

One code path for every device: the trial runs on CUDA when Ray gave it a GPU, else on the CPU
with as many torch threads as CPUs it was given. Its first report (after every start, also after a
retry from a checkpoint) carries the prune-time facts: density, kept parameters, FLOPs, layer
collapse, mask hash, per-layer densities, proxies, node, device, library versions, and the epochs
run before the checkpoint. A retry neither prunes nor scores proxies again: it takes the mask and
the prune-time facts from its checkpoint.

A report is one round trip between the trial and the driver (~10-15 ms here, during which the
trial waits), so on epochs of tens of milliseconds reporting every epoch costs more than the
training. A trial reports an epoch when something needs it: a scheduler decision point (ASHA's
rung milestones, ``report_epochs``: the scheduler cannot act between them), its last epoch, a
checkpoint, or when ``report_every_s`` seconds have passed since its last report (progress; 0:
every epoch). Each report carries the epochs not reported since the last one (``history_json``),
so the epochs table and Optuna's intermediate values still get every epoch.

A report carries a checkpoint (model, masks, optimizer, scheduler, RNG, history) when
``checkpoint_every_s`` seconds have passed since the trial began or last checkpointed, so a lost
worker or driver costs at most that long (or one epoch, if longer) of training. Each checkpoint
costs a save round trip besides the file: on epochs of a few tens of milliseconds, checkpointing
every epoch took a quarter of a sweep's wall time, and a checkpoint at every trial's end (the rule
before) ~13 ms of each sub-second trial. A trial that ends sooner than the interval has no
checkpoint: a resume runs it again from the start, at most that long. 0 checkpoints every epoch.

With ``eval_every`` > 1 a trial measures val and test only at every ``eval_every``-th epoch, at its
last epoch and at every scheduler decision point (the trainer is told them), and it reports only
epochs that were measured: the scheduler and the searcher never see an unmeasured metric. A
progress report or a checkpoint that falls due on an unmeasured epoch waits for the next measured
one; the epochs in between travel in ``history_json`` with NaN val/test values (null in the
epochs table).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from paitune.config import config_hash, trial_config
from paitune.errors import PaituneError
from paitune.plugins import load_plugins

# Not the searcher: a trial worker needs its report keys, not Optuna.
from paitune.results.rows import (
    DIVERGED_KEY,
    EPOCH_KEY,
    EPOCH_METRICS,
    ERROR_KEY,
    HISTORY_KEY,
    LAYERS_KEY,
    MAX_EPOCHS_KEY,
    REPEATED_FACTS,
    STATUS_KEY,
    VERSIONS_KEY,
)
from paitune.results.schema import STATUS_FAILED

CHECKPOINT_FILE = "trial.pt"
FACTS_KEY = "facts"  # in a checkpoint: the first start's prune-time facts (JSON), reported again by a retry
CHECKPOINT_EVERY_S = 5.0  # default of `paitune sweep --checkpoint-every`
REPORT_EVERY_S = 1.0  # default of `paitune sweep --report-every`
NAN = float("nan")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import paitune

    return {
        "paitune": paitune.__version__,
        "torch": torch.__version__,
        "ray": ray.__version__,
        "optuna": version("optuna"),  # without importing it into every trial worker
        "python": platform.python_version(),
    }


def use_resources(device: str, threads: int) -> None:
    """Set torch up for the trial's share of the node: its CPUs as torch's threads (two trials on
    two cores would fight over more), and cuDNN's autotuner on a GPU. A trial's batch shapes never
    change, so the fastest convolution algorithms are measured once per worker and shape; which one
    wins may vary between runs, as GPU training's bits already do (a retry does not score again)."""
    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def assigned_device() -> tuple[str, int]:
    """(device, torch threads) for the resources Ray assigned to this trial."""
    resources = ray.get_runtime_context().get_assigned_resources() if ray.is_initialized() else {}
    threads = max(1, int(resources.get("CPU", 1)))
    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs, so "cuda" is the first of them.
    device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
    return device, threads


MASK_FACT_KEYS = (
    "density_achieved",
    "params_kept",
    "params_total",
    "flops_dense",
    "flops_sparse",
    "collapsed",
    "mask_hash",
)


def _mask_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The mask facts of a trial facts dict (paitune.trial), with the layers as the JSON the sink reads."""
    shapes = facts["layer_shapes"]
    layers = [
        {"name": name, "shape": list(shapes[name]), "numel": int(math.prod(shapes[name])), "density": float(density)}
        for name, density in facts["layer_densities"].items()
    ]
    return {**{k: facts[k] for k in MASK_FACT_KEYS}, LAYERS_KEY: json.dumps(layers)}


def _this_attempt(device: str) -> dict[str, Any]:
    """Where this attempt of the trial runs, and with which libraries."""
    return {"node": platform.node(), "device": device, VERSIONS_KEY: json.dumps(versions(), sort_keys=True)}


def prune_facts(prepared, device: str) -> dict[str, Any]:
    """What the trial's first report carries: the pruned mask, proxies, where it ran, versions."""
    facts = prepared.prune_facts()
    extra = {k: v for k, v in facts.items() if k not in ("layer_densities", "layer_shapes")}
    return {**extra, **_mask_facts(facts), **_this_attempt(device)}


def final_mask_facts(prepared, facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` with the mask facts of the mask training ended with.

    DST, IMP and edge-popup change the mask while training; the trial row and the layers table
    record the final one (for the static methods it is the pruned mask itself).
    """
    return {**facts, **_mask_facts(prepared.final_facts())}


def _epoch_metrics(metrics) -> dict[str, float]:
    return {
        "train_loss": float(metrics.train_loss),
        "val_loss": float(metrics.val_loss),
        "val_acc": float(metrics.val_acc),
        "test_acc": float(metrics.test_acc),
        "seconds": float(metrics.seconds),
    }


def load_checkpoint(path: str | Path, device="cpu") -> dict[str, Any]:
    # weights_only: a checkpoint is tensors and plain containers; torch refuses arbitrary pickles.
    return torch.load(Path(path), map_location=device, weights_only=True)


def _latest_checkpoint(device: str) -> dict[str, Any] | None:
    """The state of the trial's latest checkpoint (None on a first start)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_checkpoint(Path(folder) / CHECKPOINT_FILE, device)


def _start_facts(prepared, device: str, state: dict[str, Any] | None) -> dict[str, Any]:
    """The first report's facts: measured now on a first start, the checkpoint's on a retry (its
    mask was not scored again), with where this attempt runs and its library versions."""
    if state is None or FACTS_KEY not in state:
        return prune_facts(prepared, device)
    return {**json.loads(state[FACTS_KEY]), **_this_attempt(device)}


def _restore(trainer, masks, facts: dict[str, Any], state: dict[str, Any] | None) -> list[dict]:
    """Load the checkpoint ``state`` into ``trainer``; returns the epochs it had run."""
    if state is None:
        return []
    saved = state.get("masks", {})
    same = (
        state["mask_hash"] == facts["mask_hash"]
        and set(saved) == set(masks)
        and all(torch.equal(saved[k].to(masks[k].device), masks[k]) for k in masks)
    )
    if not same:  # only a checkpoint without its facts is pruned again, and it must give the same mask
        raise RuntimeError(
            f"checkpoint mask {state['mask_hash']} differs from the re-pruned mask {facts['mask_hash']}: pruning is not deterministic"
        )
    trainer.load_state_dict(state["trainer"])
    return list(state["trainer"].get("history", []))


def _report_unbuildable(config: dict[str, Any], err: PaituneError) -> None:
    """End a trial whose config cannot be built (an allocation that cannot meet the sparsity on
    this model, a setting the model refuses): it would fail the same way on every retry, so it is
    reported failed with its one-line reason at once instead of raising into Tune's retries."""
    result = {**dict.fromkeys((*EPOCH_METRICS, *REPEATED_FACTS), NAN), EPOCH_KEY: 0,
              MAX_EPOCHS_KEY: int(config["epochs"]), "config_hash": config_hash(config),
              STATUS_KEY: STATUS_FAILED, ERROR_KEY: str(err)}  # fmt: skip
    tune.report(result)
    print(f"paitune: trial failed before training: {err}", file=sys.stderr)


def _report(result: dict[str, Any], trainer, masks, facts: dict[str, Any]) -> None:
    """Report one epoch with a checkpoint of everything a retry needs: model, masks, optimizer,
    LR schedule, data-order RNG and the epoch history."""
    with tempfile.TemporaryDirectory() as folder:
        state = {
            "trainer": trainer.state_dict(),
            "masks": {k: v.detach().cpu() for k, v in masks.items()},
            "mask_hash": facts["mask_hash"],
            FACTS_KEY: json.dumps(facts),  # a retry reports these instead of scoring again
        }
        torch.save(state, Path(folder) / CHECKPOINT_FILE)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(
    tune_config: dict[str, Any],
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    report_every_s: float = REPORT_EVERY_S,
    report_epochs: tuple[int, ...] = (),
) -> None:
    """Ray Tune function trainable: one PaI trial (bind the keyword arguments with
    ``tune.with_parameters``; ``report_epochs``: the scheduler's decision points)."""
    from paitune.training import Diverged
    from paitune.trial import prepare_trial

    # One INFO line per checkpoint (each epoch) from Ray's storage layer would drown the progress table.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    load_plugins()  # first: a plug-in method's option keys exist only once it has registered
    config = trial_config(tune_config)
    device, threads = assigned_device()
    use_resources(device, threads)
    state = _latest_checkpoint(device)
    # A retry continues under the mask its checkpoint holds; scoring again could give another one.
    start_masks = state["masks"] if state is not None and FACTS_KEY in state else None
    try:
        prepared = prepare_trial(config, device=device, masks=start_masks)
    except PaituneError as err:
        _report_unbuildable(config, err)
        return
    trainer = prepared.trainer
    facts = _start_facts(prepared, device, state)
    history = _restore(trainer, prepared.masks, facts, state)
    # One reported "epoch" is one run_epoch() call: a training epoch, or a whole round for IMP,
    # so the scheduler can never stop a trial inside its budget unit.
    total = int(trainer.total_epochs)
    changes_mask = prepared.current_masks is not None
    # Every report carries what the objectives and the sink need; the first one adds the facts.
    always = {
        MAX_EPOCHS_KEY: total,
        "config_hash": config_hash(config),
        **{k: facts[k] for k in REPEATED_FACTS},
    }
    pending_first = dict(facts)
    # Epochs the driver has not seen yet: those restored from the checkpoint, then the ones run
    # since the last report. The next report carries them.
    unreported: list[dict] = list(history)
    decision_points = frozenset(int(e) for e in report_epochs)
    if hasattr(trainer, "eval_epochs"):  # IMP measures each round's last epoch anyway
        trainer.eval_epochs.update(decision_points)
    if history and trainer.epoch >= total:
        # Restored from a checkpoint of its last epoch (the driver died before it saw the trial end):
        # report the last epoch again so the trial ends, and the sink writes it, normally.
        last = history[-1]
        ending = final_mask_facts(prepared, facts) if changes_mask else facts
        result = {**ending, HISTORY_KEY: json.dumps(history[:-1]), **always,
                  **{k: ending[k] for k in REPEATED_FACTS},
                  **{k: float(last[k]) for k in ("train_loss", "val_loss", "val_acc", "test_acc", "seconds")},
                  EPOCH_KEY: trainer.epoch, STATUS_KEY: "completed"}  # fmt: skip
        tune.report(result)
        return
    last_checkpoint = last_report = time.monotonic()
    while trainer.epoch < total:
        try:
            metrics = _epoch_metrics(trainer.run_epoch())
        except Diverged as diverged:
            last = (
                _epoch_metrics(diverged.last)
                if diverged.last is not None
                else dict.fromkeys(("train_loss", "val_loss", "val_acc", "test_acc", "seconds"), NAN)
            )
            result = {**pending_first, HISTORY_KEY: json.dumps(unreported), **always, **last,
                      EPOCH_KEY: trainer.epoch, STATUS_KEY: "diverged"}  # fmt: skip
            result[DIVERGED_KEY] = int(diverged.epoch)
            tune.report(result)
            print(f"paitune: trial diverged at epoch {diverged.epoch} (loss NaN/inf)", file=sys.stderr)
            return
        done = trainer.epoch >= total
        now = time.monotonic()
        measured = not math.isnan(metrics["val_acc"])  # eval_every: val/test skipped this epoch
        checkpoint_due = measured and now - last_checkpoint >= checkpoint_every_s
        due = checkpoint_due or trainer.epoch in decision_points or now - last_report >= report_every_s
        if not (done or (measured and due)):
            unreported.append({"epoch": trainer.epoch, **metrics})
            continue
        status = "completed" if done else "running"
        result = {**pending_first, HISTORY_KEY: json.dumps(unreported), **always, **metrics,
                  EPOCH_KEY: trainer.epoch, STATUS_KEY: status}  # fmt: skip
        if done and changes_mask:
            ending = final_mask_facts(prepared, facts)
            result.update(ending)
            result.update({k: ending[k] for k in REPEATED_FACTS})
        pending_first, unreported = {}, []
        if checkpoint_due:
            _report(result, trainer, prepared.masks, facts)
            last_checkpoint = time.monotonic()
        else:
            tune.report(result)
        last_report = time.monotonic()
