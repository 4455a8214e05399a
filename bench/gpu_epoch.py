"""GPU epoch: paitune's training epoch against a DataLoader loop and a tuned loop.

Same model, mask (magnitude, 90% sparsity, global), data and augmentation for every variant:

* ``paitune``: ``paitune.training.Trainer`` with ``augment: standard`` and the row's precision and
  layout; ``eval_every`` past the timed epochs, so an epoch is the training pass alone, like the
  references';
* ``tuned``: a minimal loop, data and every random draw on the device (``bench/_epoch_loops.py``);
* ``dataloader``: the PaI papers' loop, per-image crop and flip in DataLoader workers, batches
  copied to the device. It runs at fp32 with the contiguous layout only (what the papers' code
  does; ``--dataloader-everywhere`` runs it in every row).

Rows: ResNet-20 and VGG-16 on CIFAR-shaped synthetic data (3x32x32, 10 classes; 50,000 training
images by default), batch 128 and 512, precisions fp32 / bf16 / fp16, layouts contiguous and
channels-last; ``--compile off,on`` adds each row with the forward through ``torch.compile``
(paitune's ``compile: true``; the references compile their model), which cuts the per-step
kernel launches that bound small models at batch 128. Each variant runs one untimed warm-up
epoch (cuDNN autotuning, allocator, worker start, compilation), then ``--repeats`` timed epochs;
the fastest counts. Ratios: ``paitune / tuned`` (goal <= 1.1), ``paitune / dataloader`` (goal
< 1), and each row's speed-up over the same model and batch at fp32 contiguous, not compiled
(goal: bf16 channels-last >= 1.5 on an H100-class GPU).

Without CUDA it runs on the CPU at small sizes (256 images, batch 128; ``--quick``: 32 images,
batch 16), fp32 and bf16 only (fp16 convolutions on the CPU are slow reference kernels), so CI
keeps it working.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch

from bench._epoch_loops import DataLoaderLoop, TunedLoop
from bench.common import bench_parser, report, set_threads, write_json
from paitune.data import load_dataset
from paitune.models import build_model
from paitune.pruning import prune
from paitune.training import TrainConfig, Trainer

NAME = "gpu_epoch"
SPARSITY = 0.9
GOAL_VS_TUNED, GOAL_SPEEDUP = 1.1, 1.5
LAYOUTS = {"contiguous": False, "channels_last": True}


def _list(kind):
    return lambda text: [kind(v) for v in text.split(",") if v]


def parse(argv):
    parser = bench_parser(__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", type=_list(str), default=None, help="default resnet20,vgg16")
    parser.add_argument("--batch-sizes", type=_list(int), default=None, help="default 128,512 (CPU 128, quick 16)")
    parser.add_argument("--precisions", type=_list(str), default=None, help="default fp32,bf16,fp16 (CPU: fp32,bf16)")
    parser.add_argument("--layouts", type=_list(str), default=list(LAYOUTS), help="contiguous,channels_last")
    parser.add_argument("--train", type=int, default=None, help="training images (default 50,000; CPU 256, quick 32)")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per variant (default 2; quick 1)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 4; quick 1)")
    parser.add_argument("--dataloader-everywhere", action="store_true", help="the DataLoader loop in every row")
    parser.add_argument("--compile", type=_list(str), default=["off"], help="off,on: rows without / with torch.compile")
    args = parser.parse_args(argv)
    cpu = args.device == "cpu"
    args.models = args.models or ["resnet20", "vgg16"]
    args.batch_sizes = args.batch_sizes or ([16] if args.quick else [128] if cpu else [128, 512])
    args.precisions = args.precisions or (["fp32", "bf16"] if cpu else ["fp32", "bf16", "fp16"])
    args.train = args.train or (32 if args.quick else 256 if cpu else 50_000)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.workers = args.workers if args.workers is not None else (1 if args.quick else min(4, os.cpu_count() or 1))
    if set(args.compile) - {"off", "on"}:
        parser.error(f"--compile takes off and/or on, got {','.join(args.compile)}")
    unknown = sorted(set(args.layouts) - set(LAYOUTS))
    if unknown:
        parser.error(f"unknown layout(s) {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")
    return args


def _time(run_epoch, repeats: int) -> list[float]:
    run_epoch()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_epoch()  # every variant ends its epoch with a device synchronization
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(args, data, model_name: str, batch: int, precision: str, layout: str, compiled: bool = False) -> dict:
    base = build_model(model_name, data.input_shape, data.num_classes, seed=0)
    masks = prune(base, "magnitude", sparsity=SPARSITY, seed=0)
    channels_last, device = LAYOUTS[layout], args.device
    config = TrainConfig(epochs=args.repeats + 3, batch_size=batch, lr=0.1, augment="standard", compile=compiled,
                         precision=precision, channels_last=channels_last, eval_every=args.repeats + 3)  # fmt: skip
    trainer = Trainer(copy.deepcopy(base), masks, data, config, device=device)
    loop_args = dict(batch_size=batch, precision=precision, channels_last=channels_last, device=device,
                     compile=compiled)  # fmt: skip
    x, y = data.train.x, data.train.y
    tuned = TunedLoop(copy.deepcopy(base), masks, x, y, **loop_args)
    seconds = {"paitune": _time(trainer.run_epoch, args.repeats), "tuned": _time(tuned.run_epoch, args.repeats)}
    del tuned
    if args.dataloader_everywhere or (precision == "fp32" and not channels_last and not compiled):
        loop = DataLoaderLoop(copy.deepcopy(base), masks, x, y, workers=args.workers, **loop_args)
        seconds["dataloader"] = _time(loop.run_epoch, args.repeats)
        del loop
    best = {k: min(v) for k, v in seconds.items()}
    row = {"model": model_name, "batch": batch, "precision": precision, "layout": layout, "compile": compiled,
           "paitune_s": best["paitune"], "tuned_s": best["tuned"], "dataloader_s": best.get("dataloader"),
           "paitune_vs_tuned": best["paitune"] / best["tuned"],
           "paitune_vs_dataloader": best["paitune"] / best["dataloader"] if "dataloader" in best else None,
           "images_per_s": x.shape[0] / best["paitune"], "epoch_seconds": seconds}  # fmt: skip
    return row


def _keep_partial(args, rows: list[dict]) -> None:
    """Print the newest row and write every row so far: a run cut off by a time limit (a lent GPU
    machine's budget) keeps what it measured."""
    row = rows[-1]
    compiled = " compiled" if row["compile"] else ""
    print(f"{row['model']} batch {row['batch']} {row['precision']} {row['layout']}{compiled}: paitune "
          f"{row['paitune_s']:.3f} s, tuned {row['tuned_s']:.3f} s, "
          f"paitune/tuned {row['paitune_vs_tuned']:.3f}", flush=True)  # fmt: skip
    write_json(f"{NAME}.partial", {"rows": rows}, args.out)


def _speedups(rows: list[dict]) -> None:
    """Each row's paitune epoch against the same model and batch at fp32 contiguous, not compiled."""
    base = {
        (r["model"], r["batch"]): r["paitune_s"]
        for r in rows
        if (r["precision"], r["layout"], r["compile"]) == ("fp32", "contiguous", False)
    }
    for r in rows:
        ref = base.get((r["model"], r["batch"]))
        r["speedup_vs_fp32"] = ref / r["paitune_s"] if ref else None


COLUMNS = [
    ("model", "model", ""), ("batch", "batch", "d"), ("precision", "prec", ""), ("layout", "layout", ""),
    ("compile", "compile", ""),
    ("paitune_s", "paitune s", ".3f"), ("tuned_s", "tuned s", ".3f"), ("dataloader_s", "dataloader s", ".3f"),
    ("paitune_vs_tuned", "paitune/tuned", ".3f"), ("paitune_vs_dataloader", "paitune/dataloader", ".3f"),
    ("speedup_vs_fp32", "speed-up vs fp32", ".2f"), ("images_per_s", "images/s", ".0f"),
]  # fmt: skip


def main(argv=None) -> int:
    args = parse(argv)
    set_threads(args.threads)
    if args.device.startswith("cuda"):
        # As paitune's trials (use_resources), the papers' code and a tuned loop do.
        torch.backends.cudnn.benchmark = True
    data = load_dataset("synthetic", synthetic_shape=(3, 32, 32), synthetic_size=(args.train, 256, 256))
    rows = []
    for model in args.models:
        for batch in args.batch_sizes:
            for precision in args.precisions:
                for layout in args.layouts:
                    for compiled in args.compile:
                        rows.append(measure(args, data, model, batch, precision, layout, compiled == "on"))
                        _keep_partial(args, rows)
    _speedups(rows)
    vs_loader = [r["paitune_vs_dataloader"] for r in rows if r["paitune_vs_dataloader"] is not None]
    fast = [r["speedup_vs_fp32"] for r in rows
            if (r["precision"], r["layout"], r["compile"]) == ("bf16", "channels_last", False)]  # fmt: skip
    fast_compiled = [r["speedup_vs_fp32"] for r in rows
                     if (r["precision"], r["layout"], r["compile"]) == ("bf16", "channels_last", True)]  # fmt: skip
    summary = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "paitune_vs_tuned_max": max(r["paitune_vs_tuned"] for r in rows),
        "goal_vs_tuned_met": all(r["paitune_vs_tuned"] <= GOAL_VS_TUNED for r in rows),
        "paitune_vs_dataloader_max": max(vs_loader) if vs_loader else None,
        "goal_vs_dataloader_met": bool(vs_loader) and all(v < 1.0 for v in vs_loader),
        "bf16_channels_last_speedup_min": min(fast) if fast and None not in fast else None,
        "goal_speedup_met": bool(fast) and None not in fast and min(fast) >= GOAL_SPEEDUP,
    }
    if fast_compiled:
        known = None not in fast_compiled
        summary["bf16_channels_last_compiled_speedup_min"] = min(fast_compiled) if known else None
        summary["goal_speedup_compiled_met"] = known and min(fast_compiled) >= GOAL_SPEEDUP
    settings = {
        "device": args.device, "train_images": args.train, "shape": [3, 32, 32], "sparsity": SPARSITY,
        "models": args.models, "batch_sizes": args.batch_sizes, "precisions": args.precisions,
        "layouts": args.layouts, "compile": args.compile, "repeats": args.repeats, "dataloader_workers": args.workers,
        "augment": "random crop (4-pixel zero padding) + horizontal flip in every variant",
        "timing": "fastest of `repeats` training epochs after one warm-up epoch; no evaluation",
        "threads": args.threads,
    }  # fmt: skip
    title = f"Training epoch on {summary['device']} ({args.train} images, sparsity {SPARSITY})"
    report(NAME, args, settings=settings, rows=rows, summary=summary, columns=COLUMNS, title=title)
    (Path(args.out) / f"{NAME}.partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
