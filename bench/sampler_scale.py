"""Sampler scale: does one sampler's cost per trial stay flat as its study grows?

One study in Optuna's journal storage (as a sweep keeps each context's study), a digits-space
shaped objective (method and allocation categorical, lr on a log scale), one ask and one tell per
trial, through paitune's ``make_sampler`` (``nsga2`` is paitune's flat NSGA-II, ``nsga2-stock``
Optuna's own, for comparison). Reported: the process's CPU milliseconds per trial for each block
of ``--block`` trials. No Ray, no training: the sampler and the storage alone, which is what a
sweep's driver pays per trial on top of Tune (``bench.sweep_scale`` measures the whole driver).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from bench.common import bench_parser, report, set_threads
from paitune.search.samplers import make_sampler

NAME = "sampler_scale"
METHODS = ("random", "magnitude", "snip", "grasp", "synflow")


def _objective(trial: optuna.Trial) -> float:
    method = trial.suggest_categorical("method", METHODS)
    allocation = trial.suggest_categorical("allocation", ("global", "erk"))
    lr = trial.suggest_float("lr", 0.01, 0.2, log=True)
    return METHODS.index(method) / 10 + (allocation == "erk") / 20 + lr


def _sampler(name: str) -> optuna.samplers.BaseSampler:
    if name == "nsga2-stock":
        return optuna.samplers.NSGAIISampler(seed=0)
    return make_sampler(name, seed=0, n_objectives=1)


def cpu_ms_per_block(name: str, trials: int, block: int, folder: Path) -> list[float]:
    storage = JournalStorage(JournalFileBackend(str(folder / f"{name}.journal")))
    study = optuna.create_study(storage=storage, sampler=_sampler(name), direction="maximize")
    out, start = [], time.process_time()
    for i in range(1, trials + 1):
        trial = study.ask()
        study.tell(trial, _objective(trial))
        if i % block == 0:
            now = time.process_time()
            out.append(1000 * (now - start) / block)
            start = now
    return out


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--trials", type=int, default=3000, help="trials per study (default 3000)")
    parser.add_argument("--block", type=int, default=500, help="trials per reported block (default 500)")
    parser.add_argument(
        "--samplers",
        default="random,tpe,nsga2,nsga2-stock",
        help="comma-separated (default random,tpe,nsga2,nsga2-stock)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)  # TPE's and the GP's models run torch/numpy code
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials, block = (60, 20) if args.quick else (args.trials, args.block)
    rows = []
    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        for name in args.samplers.split(","):
            blocks = cpu_ms_per_block(name, trials, block, Path(tmp))
            rows.append({"sampler": name, "trials": trials, "first_ms": blocks[0], "last_ms": blocks[-1],
                         "growth": blocks[-1] / blocks[0], "blocks_ms": blocks})  # fmt: skip
    columns = [("sampler", "sampler", ""), ("trials", "trials", "d"), ("first_ms", "first block ms", ".2f"),
               ("last_ms", "last block ms", ".2f"), ("growth", "last/first", ".2f")]  # fmt: skip
    report(NAME, args, settings={"trials": trials, "block": block, "samplers": args.samplers.split(",")}, rows=rows,
           summary={"blocks_ms": {r["sampler"]: [round(b, 2) for b in r["blocks_ms"]] for r in rows}}, columns=columns,
           title="Sampler scale: CPU ms per trial (ask + tell) in the first and last block of one study")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
