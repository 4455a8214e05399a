"""Search efficiency within context: epochs a search spends before it finds each context's best choice.

One fixed space small enough to run whole (the digits MLP; the contexts are the sparsities, the
choices method x layer allocation, one seed, a few epochs) is first run as a full grid
(``--sampler grid --scheduler fifo``): in each context, the grid's best final ``val_acc`` sets that
context's target, best - 1 point. Then each search arm runs with a budget of ``budget`` sampled
trials (as many as the grid has configs), once per sweep seed (``--sampler-seed``):

* ``asha_tpe``: TPE + ASHA (paitune's default pairing: a TPE study and ASHA rungs per context);
* ``tpe``: TPE alone, every trial to its full budget (fifo);
* ``random_asha``: random sampling + ASHA;

and ``asha_tpe`` once more with one worker (``--max-concurrent 1``) for the scaling curve.

Only the sampled (pruned) trials count: the unpruned reference trials paitune runs beside every
sweep are the same fixed cost in every arm. For one context, epochs spent = the cumulative
``epochs_run`` of that context's trials in the order they finished (the order the sink wrote their
files), up to and including its first trial that ran its full budget with a final ``val_acc`` >=
the context's target; divided by the context's grid epochs, it is the *fraction of grid* for that
(context, sweep seed). A context a sweep never solves counts as infinite (the table shows how many
were found). ``all_contexts`` is the sweep-level cost: cumulative epochs over all trials until the
last context reaches its target, as a fraction of the whole grid. Training is deterministic per
config (one seed, one thread), so a config scores the same in every arm.

All sweeps share one local Ray instance started by the benchmark. Goal: asha_tpe's median
fraction of grid per context <= 25%.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench._sweep_runs import SweepRun, run_sweep_inprocess, start_ray, stop_ray
from bench.common import bench_parser, report, set_threads

NAME = "search_efficiency"
GOAL_FRACTION = 0.25
TOLERANCE = 0.01  # "within 1 point" of the grid's best accuracy
ARMS = {"asha_tpe": ("tpe", "asha"), "tpe": ("tpe", "fifo"), "random_asha": ("random", "asha")}
CURVE_ARM = "asha_tpe"
REFERENCE_METHOD = "dense"  # paitune's unpruned reference trials (paitune.spaces.compile.dense_references)


@dataclass(frozen=True)
class Setup:
    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    allocations: tuple[str, ...]
    epochs: int
    budget: int  # trials per search sweep
    seeds: int  # sweep seeds (--sampler-seed 0..seeds-1) per search arm
    curve_seeds: int  # of those, how many also run with one worker
    arms: tuple[str, ...] = tuple(ARMS)  # the search arms run (all three in full mode)

    @property
    def grid_size(self) -> int:
        return len(self.methods) * len(self.sparsities) * len(self.allocations)


def setup(quick: bool) -> Setup:
    if quick:
        # A sweep's fixed start-up (~10 s on 2 cores) dominates a tiny one: the smoke run keeps to the
        # grid, the goal's arm and its one-worker run (the other arms differ only in flags).
        return Setup(("random", "snip"), (0.9, 0.98), ("global", "erk"), epochs=2, budget=4, seeds=1, curve_seeds=1,
                     arms=(CURVE_ARM,))  # fmt: skip
    # 36 configs x 4 epochs = 144 grid epochs; a search sweep may run as many trials as the grid
    # has configs. 10 sweep seeds: with two workers the order trials finish in (and so what ASHA
    # and TPE see) depends on timing, and medians over 5 seeds moved by 10 points between runs.
    return Setup(("random", "magnitude", "snip", "grasp"), (0.9, 0.95, 0.98), ("global", "uniform", "erk"),
                 epochs=4, budget=36, seeds=10, curve_seeds=3)  # fmt: skip


def space_yaml(s: Setup) -> dict:
    """The fixed space (the default space's training settings, no proxies, one seed)."""
    return {
        "name": "search_efficiency",
        "description": "digits MLP: method x sparsity x allocation, one seed (bench.search_efficiency)",
        "settings": {"dataset": "digits", "model": "mlp", "epochs": s.epochs, "batch_size": 64, "optimizer": "sgd",
                     "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "lr_schedule": "cosine",
                     "prune_batches": 1, "prune_batch_size": 256, "proxies": []},
        "params": {
            "method": {"type": "categorical", "choices": list(s.methods)},
            "sparsity": {"type": "categorical", "choices": list(s.sparsities)},
            "allocation": {"type": "categorical", "choices": list(s.allocations)},
        },
        "seeds": [0],
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "num_samples": s.grid_size,
    }  # fmt: skip


def searched(trials):
    """The sampled trials, without the unpruned reference paitune schedules beside them (one per
    seed): the same in every arm and never proposed by the sampler, so not part of the search."""
    return trials[trials["method"] != REFERENCE_METHOD].reset_index(drop=True)


def grid_targets(grid: SweepRun) -> dict[str, tuple[float, int]]:
    """Context -> (target val_acc = the grid's best there - TOLERANCE, the grid's epochs there)."""
    trials = searched(grid.trials)
    return {
        ctx: (float(group["val_acc"].max()) - TOLERANCE, int(group["epochs_run"].sum()))
        for ctx, group in trials.groupby("context")
    }


def time_to_target(run: SweepRun, targets: dict[str, tuple[float, int]]) -> dict:
    """Per context: epochs spent in that context, in completion order, until a full-budget trial
    hits its target; and the epochs (over all contexts) until every context has."""
    trials = searched(run.trials)
    full = trials["epochs_run"] >= trials["max_epochs"]
    per_context, first_hits = {}, []
    for ctx, (target, _) in targets.items():
        mine = trials[trials["context"] == ctx]
        hits = mine.index[full[mine.index] & (mine["val_acc"] >= target)]
        per_context[ctx] = int(mine.loc[: hits[0], "epochs_run"].sum()) if len(hits) else math.inf
        first_hits.append(int(hits[0]) if len(hits) else None)
    all_found = None not in first_hits
    last_hit = max(first_hits) if all_found else None
    return {
        "epochs_to_target": per_context,
        "fraction_of_grid": {ctx: per_context[ctx] / targets[ctx][1] for ctx in targets},
        "found": sum(math.isfinite(e) for e in per_context.values()),
        "all_contexts_epochs": int(trials.loc[:last_hit, "epochs_run"].sum()) if all_found else math.inf,
        "all_contexts_wall_s": float(trials["finished_s"][last_hit]) if all_found else math.inf,
        "epochs_total": int(trials["epochs_run"].sum()),
        "trials": len(trials),
        "trials_per_context": trials.groupby("context").size().to_dict(),
        "distinct_configs": int(trials["config_hash"].nunique()),
        "wall_s": run.wall_s,
    }


def _median(values: list[float]) -> float:
    # Not-found seeds are +inf: the median is finite only when most seeds found the target.
    return statistics.median(values) if values else math.nan


def arm_row(arm: str, sampler: str, scheduler: str, workers: int, outcomes: list[dict], grid_epochs: int) -> dict:
    fractions = [f for o in outcomes for f in o["fraction_of_grid"].values()]
    contexts = sum(len(o["fraction_of_grid"]) for o in outcomes)
    return {
        "arm": arm,
        "sampler": sampler,
        "scheduler": scheduler,
        "workers": workers,
        "seeds": len(outcomes),
        "found": f"{sum(o['found'] for o in outcomes)}/{contexts}",
        # Over (context, sweep seed) pairs; not-found pairs are +inf.
        "median_fraction_of_grid": _median(fractions),
        "p75_fraction_of_grid": sorted(fractions)[min(len(fractions) - 1, (3 * len(fractions)) // 4)]
        if fractions
        else math.nan,
        "median_all_contexts_fraction": _median([o["all_contexts_epochs"] / grid_epochs for o in outcomes]),
        "median_all_contexts_wall_s": _median([o["all_contexts_wall_s"] for o in outcomes]),
        "median_epochs_total": _median([o["epochs_total"] for o in outcomes]),
        "median_sweep_wall_s": _median([o["wall_s"] for o in outcomes]),
        "median_distinct_configs": _median([o["distinct_configs"] for o in outcomes]),
        "per_seed": outcomes,
    }


COLUMNS = [
    ("arm", "arm", ""),
    ("workers", "workers", "d"),
    ("seeds", "seeds", "d"),
    ("found", "contexts found", ""),
    ("median_fraction_of_grid", "per context: of grid epochs (median)", ".3f"),
    ("p75_fraction_of_grid", "(75th pct)", ".3f"),
    ("median_all_contexts_fraction", "all contexts: of grid epochs", ".3f"),
    ("median_all_contexts_wall_s", "wall to all s", ".1f"),
    ("median_epochs_total", "epochs run", ".0f"),
    ("median_sweep_wall_s", "sweep wall s", ".1f"),
]


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--cpus", type=int, default=2, help="CPUs given to Ray, and the workers of the main arms (default 2)"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.cpus < 2:
        parser.error(f"--cpus must be >= 2 (the curve compares 1 and 2 workers), got {args.cpus}")
    s = setup(args.quick)
    workers = 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(space_yaml(s), sort_keys=False))
        ray_init = start_ray(args.cpus)
        try:

            def sweep(name, sampler, scheduler, seed, max_concurrent, num_samples):
                return run_sweep_inprocess(
                    str(space),
                    Path(tmp),
                    name,
                    num_samples=num_samples,
                    sampler=sampler,
                    scheduler=scheduler,
                    sampler_seed=seed,
                    max_concurrent=max_concurrent,
                )

            grid = sweep("grid", "grid", "fifo", 0, workers, None)
            if len(searched(grid.trials)) != s.grid_size:
                raise RuntimeError(f"the grid ran {len(searched(grid.trials))} pruned trials, expected {s.grid_size}")
            targets = grid_targets(grid)
            grid_outcome = time_to_target(grid, targets)
            outcomes: dict[tuple[str, int], list[dict]] = {}
            for seed in range(s.seeds):
                for arm in s.arms:
                    sampler, scheduler = ARMS[arm]
                    run = sweep(f"{arm}-w{workers}-s{seed}", sampler, scheduler, seed, workers, s.budget)
                    outcomes.setdefault((arm, workers), []).append({"seed": seed, **time_to_target(run, targets)})
                if seed < s.curve_seeds:
                    sampler, scheduler = ARMS[CURVE_ARM]
                    run = sweep(f"{CURVE_ARM}-w1-s{seed}", sampler, scheduler, seed, 1, s.budget)
                    outcomes.setdefault((CURVE_ARM, 1), []).append({"seed": seed, **time_to_target(run, targets)})
        finally:
            stop_ray()
    grid_epochs = int(searched(grid.trials)["epochs_run"].sum())
    rows = [{**arm_row("grid", "grid", "fifo", workers, [{"seed": 0, **grid_outcome}], grid_epochs)}]
    rows += [arm_row(arm, *ARMS[arm], workers, outcomes[(arm, workers)], grid_epochs) for arm in s.arms]
    curve = {n: arm_row(CURVE_ARM, *ARMS[CURVE_ARM], n, outcomes[(CURVE_ARM, n)][: s.curve_seeds], grid_epochs)
             for n in (1, workers)}  # fmt: skip
    rows += [{**curve[n], "arm": f"{CURVE_ARM} (curve seeds)"} for n in (1, workers)]
    asha_tpe = next(r for r in rows if r["arm"] == CURVE_ARM)
    wall = {n: curve[n]["median_all_contexts_wall_s"] for n in curve}
    summary = {
        "targets_val_acc": {ctx: t for ctx, (t, _) in targets.items()},
        "grid_epochs": grid_epochs,
        "grid_configs": s.grid_size,
        "asha_tpe_fraction_of_grid": asha_tpe["median_fraction_of_grid"],
        "goal_fraction": GOAL_FRACTION,
        "goal_met": asha_tpe["median_fraction_of_grid"] <= GOAL_FRACTION,
        "wall_to_all_contexts_1_worker_s": wall[1],
        "wall_to_all_contexts_2_workers_s": wall[workers],
        "speedup_2_workers": wall[1] / wall[workers] if wall[workers] > 0 else math.nan,
        "ray_init_s": ray_init,
        "benchmark_s": time.perf_counter() - started,
    }
    settings = {
        "space": space_yaml(s), "budget_trials": s.budget, "sweep_seeds": s.seeds, "curve_seeds": s.curve_seeds,
        "tolerance": TOLERANCE, "arms": {a: {"sampler": ARMS[a][0], "scheduler": ARMS[a][1]} for a in s.arms},
        "cpus": args.cpus, "threads": args.threads,
        "definition": "per context: cumulative epochs_run of the context's trials in completion order up to its "
                      "first full-budget trial with val_acc >= the context's grid best - tolerance, over the "
                      "context's grid epochs; not found = inf",
    }  # fmt: skip
    report(NAME, args, settings=settings, rows=rows, summary=summary, columns=COLUMNS,
           title=f"Search efficiency within context: {s.grid_size} configs x {s.epochs} epochs, budget {s.budget} trials, "
                 f"{s.seeds} sweep seed(s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
