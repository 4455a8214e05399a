"""Scoring cost: seconds to prune with each PaI method that scores, as a fraction of a training epoch.

For each model (VGG-16 and ResNet-20 on synthetic 3x32x32 data, 10 classes) and each device (the
CPU; CUDA too when torch sees a GPU), the benchmark times ``paitune.pruning.prune`` at sparsity
0.9, global allocation, on the trial defaults' scoring data (one batch of 256 training samples),
and one training epoch (``Trainer.run_epoch``, batch 128) of the same model on the same data.

* ``fraction`` = prune seconds / the measured epoch of ``epoch_samples`` samples;
* ``cifar_fraction`` = prune seconds / the epoch extrapolated to CIFAR's 45,000 training samples
  (the measured epoch's seconds per sample x 45,000: a training epoch is linear in its samples).

The methods are SNIP, GraSP, SynFlow, iterative SNIP, ProsPr, NTK-SAP, PHEW and PX (``--methods``
picks some), each with its default rounds: SynFlow and iterative SNIP 100, NTK-SAP 20, PX 100, the
others one. SynFlow runs all of its rounds (each is one pass of a single all-ones input). The
rounds of iterative SNIP, NTK-SAP and PX each cost the same (passes of the scoring batch on the
masked net, then a selection); on the CPU the default run times ``--rounds`` of them and scales
linearly to the full count (``extrapolated`` in the row: an upper bound, since the one-off setup
is scaled too); ``--rounds 100`` measures them all. ``--epoch-samples`` and ``--score-batch``
shrink the run for a shared CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.common import bench_parser, report, set_threads, timed
from paitune.data import load_dataset, scoring_batches
from paitune.models import build_model
from paitune.pruning import DEFAULT_ITERATIONS, prune
from paitune.training import TrainConfig, Trainer

NAME = "scoring_cost"
METHODS = ("snip", "grasp", "synflow", "iterative_snip", "prospr", "ntk_sap", "phew", "px")
EXTRAPOLATED = ("iterative_snip", "ntk_sap", "px")  # rounds of equal cost: a few timed on the CPU
ITERATIONS = 100  # the most rounds any method runs by default (SynFlow, iterative SNIP, PX)
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


def full_rounds(method: str) -> int:
    return DEFAULT_ITERATIONS.get(method, 1)


def prune_seconds(model, method: str, batches, device: str, timed_rounds: int) -> tuple[float, int]:
    """(seconds for the method's full run, iterations actually run)."""
    full = full_rounds(method)
    rounds = min(timed_rounds, full) if method in EXTRAPOLATED else full
    iterations = rounds if method in DEFAULT_ITERATIONS else None
    _, seconds = _timed_on(device, prune, model, method, sparsity=SPARSITY, batches=batches, iterations=iterations)
    if rounds < full:
        seconds *= full / rounds
    return seconds, rounds


def measure(model_name: str, device: str, cfg: Setup, timed_rounds: int, methods=METHODS) -> list[dict]:
    # Tiny val/test splits: the epoch is (almost) the training pass, which is what scales with size.
    data = load_dataset("synthetic", synthetic_shape=cfg.input_shape, synthetic_size=(cfg.epoch_samples, 32, 32))
    model = build_model(model_name, data.input_shape, data.num_classes, seed=0).to(device)
    batches = [(x.to(device), y.to(device)) for x, y in scoring_batches(data, 1, cfg.score_batch, seed=0)]
    _warm_up(model, batches[0], device)
    epoch = epoch_seconds(model, data, cfg, device)
    cifar_epoch = epoch / cfg.epoch_samples * CIFAR_EPOCH
    rows = []
    for method in methods:
        seconds, rounds = prune_seconds(model, method, batches, device, timed_rounds)
        full = full_rounds(method)
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
        "--rounds",
        "--isnip-rounds",
        dest="rounds",
        type=int,
        default=None,
        help="rounds of iterative SNIP, NTK-SAP and PX actually timed on the CPU, scaled to their full count "
        "(default 5; 2 with --quick; 100 = no extrapolation)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    parser.add_argument("--epoch-samples", type=int, default=None, help="samples in the measured epoch")
    parser.add_argument("--score-batch", type=int, default=None, help="samples in the scoring batch")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    cfg = setup(args.quick)
    if args.epoch_samples or args.score_batch:
        cfg = Setup(
            cfg.models, cfg.input_shape, args.epoch_samples or cfg.epoch_samples, args.score_batch or cfg.score_batch,
            cfg.train_batch,
        )  # fmt: skip
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    cpu_rounds = args.rounds or (2 if args.quick else 5)
    if not 1 <= cpu_rounds <= ITERATIONS:
        raise SystemExit(f"--rounds must be in 1..{ITERATIONS}, got {cpu_rounds}")
    rows = []
    for device in devices():
        rounds = cpu_rounds if device == "cpu" else ITERATIONS  # a GPU is fast enough to run them all
        for model_name in cfg.models:
            rows += measure(model_name, device, cfg, rounds, methods)
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
        "methods": list(methods),
        "rounds_timed_cpu": cpu_rounds,
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
