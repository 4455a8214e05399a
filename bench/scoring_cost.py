"""Scoring cost: seconds to prune with SNIP, GraSP, SynFlow and iterative SNIP, as a fraction of an epoch.

For each model (VGG-16 and ResNet-20 on synthetic 3x32x32 data, 10 classes) and each device (the
CPU; CUDA too when torch sees a GPU), the benchmark times ``paitune.pruning.prune`` at sparsity
0.9, global allocation, on the trial defaults' scoring data (one batch of 256 training samples),
and one training epoch (``Trainer.run_epoch``, batch 128) of the same model on the same data.

* ``fraction`` = prune seconds / the measured epoch of ``epoch_samples`` samples;
* ``cifar_fraction`` = prune seconds / the epoch extrapolated to CIFAR's 45,000 training samples
  (the measured epoch's seconds per sample x 45,000: a training epoch is linear in its samples).

SynFlow runs its 100 iterations. Iterative SNIP's 100 rounds of SNIP each cost the same (one
forward+backward of the scoring batch on the masked net, then a selection); on the CPU the
default run times ``--isnip-rounds`` of them and scales linearly to 100 (``extrapolated`` in the
row: an upper bound, since the one-off setup is scaled too); ``--isnip-rounds 100`` measures
them all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.common import bench_parser, report, set_threads, timed
from paitune.data import load_dataset, scoring_batches
from paitune.models import build_model
from paitune.pruning import prune
from paitune.training import TrainConfig, Trainer

NAME = "scoring_cost"
METHODS = ("snip", "grasp", "synflow", "iterative_snip")
ITERATIONS = 100  # synflow and iterative_snip, as their papers (and paitune's defaults) use
CIFAR_EPOCH = 45_000
SPARSITY = 0.9


@dataclass(frozen=True)
class Setup:
    models: tuple[str, ...]
    input_shape: tuple[int, int, int]
    epoch_samples: int
    score_batch: int
    train_batch: int


def setup(quick: bool) -> Setup:
    if quick:
        return Setup(("cnn", "resnet20"), (3, 8, 8), 32, 16, 16)
    # 512 samples: VGG-16 costs ~55 ms per sample forward+backward on one core of the dev machine,
    # so its epoch alone is ~30 s; the per-sample cost is what the CIFAR extrapolation uses.
    return Setup(("vgg16", "resnet20"), (3, 32, 32), 512, 256, 128)


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed_on(device: str, fn, *args, **kwargs):
    _sync(device)
    result, seconds = timed(fn, *args, **kwargs)
    _sync(device)
    return result, seconds


def _warm_up(model, batch, device: str) -> None:
    """One forward+backward so that lazy initialization (kernels, allocator) is not timed."""
    scratch = copy.deepcopy(model)
    x, y = batch
    F.cross_entropy(scratch(x[:8]), y[:8]).backward()
    _sync(device)


def epoch_seconds(model, data, cfg: Setup, device: str) -> float:
    trainer = Trainer(
        copy.deepcopy(model), None, data, TrainConfig(epochs=1, batch_size=cfg.train_batch, seed=0), device=device
    )
    _, seconds = _timed_on(device, trainer.run_epoch)
    return seconds


def prune_seconds(model, method: str, batches, device: str, isnip_rounds: int) -> tuple[float, int]:
    """(seconds for the method's full run, iterations actually run)."""
    rounds = {"synflow": ITERATIONS, "iterative_snip": min(isnip_rounds, ITERATIONS)}.get(method)
    _, seconds = _timed_on(device, prune, model, method, sparsity=SPARSITY, batches=batches, iterations=rounds)
    if method == "iterative_snip" and rounds < ITERATIONS:
        seconds *= ITERATIONS / rounds
    return seconds, rounds or 1


def measure(model_name: str, device: str, cfg: Setup, isnip_rounds: int) -> list[dict]:
    # Tiny val/test splits: the epoch is (almost) the training pass, which is what scales with size.
    data = load_dataset("synthetic", synthetic_shape=cfg.input_shape, synthetic_size=(cfg.epoch_samples, 32, 32))
    model = build_model(model_name, data.input_shape, data.num_classes, seed=0).to(device)
    batches = [(x.to(device), y.to(device)) for x, y in scoring_batches(data, 1, cfg.score_batch, seed=0)]
    _warm_up(model, batches[0], device)
    epoch = epoch_seconds(model, data, cfg, device)
    cifar_epoch = epoch / cfg.epoch_samples * CIFAR_EPOCH
    rows = []
    for method in METHODS:
        seconds, rounds = prune_seconds(model, method, batches, device, isnip_rounds)
        full = ITERATIONS if method in ("synflow", "iterative_snip") else 1
        rows.append(
            {
                "model": model_name,
                "device": device,
                "method": method,
                "iterations": full,
                "measured_iterations": rounds,
                "extrapolated": rounds < full,
                "seconds": seconds,
                "epoch_samples": cfg.epoch_samples,
                "epoch_seconds": epoch,
                "fraction": seconds / epoch,
                "cifar_epoch_seconds": cifar_epoch,
                "cifar_fraction": seconds / cifar_epoch,
            }
        )
    return rows


COLUMNS = [
    ("model", "model", ""),
    ("device", "device", ""),
    ("method", "method", ""),
    ("iterations", "iters", "d"),
    ("measured_iterations", "timed iters", "d"),
    ("seconds", "prune s", ".2f"),
    ("epoch_seconds", "epoch s", ".2f"),
    ("fraction", "x epoch", ".3f"),
    ("cifar_epoch_seconds", "45k epoch s", ".1f"),
    ("cifar_fraction", "x 45k epoch", ".4f"),
]


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--isnip-rounds",
        type=int,
        default=None,
        help="iterative SNIP rounds actually timed on the CPU, scaled to 100 "
        "(default 5; 2 with --quick; 100 = no extrapolation)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cfg = setup(args.quick)
    cpu_rounds = args.isnip_rounds or (2 if args.quick else 5)
    if not 1 <= cpu_rounds <= ITERATIONS:
        raise SystemExit(f"--isnip-rounds must be in 1..{ITERATIONS}, got {cpu_rounds}")
    rows = []
    for device in devices():
        rounds = cpu_rounds if device == "cpu" else ITERATIONS  # a GPU is fast enough to run them all
        for model_name in cfg.models:
            rows += measure(model_name, device, cfg, rounds)
    summary = {
        "epoch_samples": cfg.epoch_samples,
        "cifar_epoch_samples": CIFAR_EPOCH,
        "max_fraction_of_cifar_epoch": max(r["cifar_fraction"] for r in rows),
        "devices": devices(),
    }
    settings = {
        "models": list(cfg.models),
        "input_shape": list(cfg.input_shape),
        "classes": 10,
        "sparsity": SPARSITY,
        "allocation": "global",
        "scoring_data": f"1 batch of {cfg.score_batch} training samples",
        "train_batch_size": cfg.train_batch,
        "iterative_snip_rounds_timed_cpu": cpu_rounds,
        "threads": args.threads,
    }
    report(
        NAME,
        args,
        settings=settings,
        rows=rows,
        summary=summary,
        columns=COLUMNS,
        title=f"Scoring cost vs one training epoch ({cfg.epoch_samples} samples measured; {args.threads} thread(s))",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
