"""Epoch time of the digits MLP: this tree's Trainer (training modes off) against another trainer.py.

    git show main:paitune/training/trainer.py > /tmp/base_trainer.py
    python3 -m bench._trainer_overhead --base /tmp/base_trainer.py

Both trainers train the same pruned MLP (magnitude, 90% sparsity) on digits with the same
config; their epochs are interleaved, the order alternating, and a sample sums ``--epochs``
epochs. The fastest sample of each counts (other processes only add time); a second instance of
the base trainer shows how far identical code moves.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time

import torch

from bench.common import median
from paitune.data import load_dataset
from paitune.models import build_model
from paitune.pruning import prune
from paitune.training import TrainConfig, Trainer


def load_base(path: str):
    # Named inside paitune.training, so the file's relative imports resolve as in the package.
    spec = importlib.util.spec_from_file_location("paitune.training._base_trainer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the trainer.py to compare with")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per sample")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = load_base(args.base)
    data = load_dataset("digits")
    model = build_model("mlp", data.input_shape, data.num_classes, seed=0)
    masks = prune(model, "magnitude", sparsity=0.9, seed=0)
    epochs = args.samples * args.epochs + 1
    trainers = {
        "modes_off": Trainer(copy.deepcopy(model), masks, data, TrainConfig(epochs=epochs, seed=0)),
        "base": base.Trainer(copy.deepcopy(model), masks, data, base.TrainConfig(epochs=epochs, seed=0)),
        "base_again": base.Trainer(copy.deepcopy(model), masks, data, base.TrainConfig(epochs=epochs, seed=0)),
    }
    for t in trainers.values():
        t.run_epoch()
    seconds = {name: [] for name in trainers}
    names = list(trainers)
    for i in range(args.samples):
        for name in names[i % 3 :] + names[: i % 3]:
            start = time.perf_counter()
            for _ in range(args.epochs):
                trainers[name].run_epoch()
            seconds[name].append((time.perf_counter() - start) / args.epochs)
    best = {k: min(v) for k, v in seconds.items()}
    for name in names:
        print(f"{name:10s} best {best[name] * 1e3:.2f} ms  median {median(seconds[name]) * 1e3:.2f} ms per epoch")
    print(
        f"modes_off / base = {best['modes_off'] / best['base']:.3f}; base_again / base = {best['base_again'] / best['base']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
