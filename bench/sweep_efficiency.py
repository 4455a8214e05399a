"""Sweep efficiency: how much of a Ray sweep's wall time is trial compute, against a no-Ray floor.

One run, one machine, the same trials twice:

* ``ray sweep``: ``paitune sweep`` of the default space through its public API (``plan_sweep`` +
  ``run_sweep``) with ``--sampler random --sampler-seed 0 --scheduler fifo``: fixed configs and no
  early stopping, so every trial trains its full budget. Ray is started once by this benchmark
  (``ray.init`` timed apart, ``ray_init_s``); ``wall_s`` is ``run_sweep`` from call to return
  (Tuner setup, trial actors, every trial, the Parquet sink, the Optuna study, the summary).
* ``sequential floor``: the very trials the sweep ran (their ``config_json`` from the trials
  table) in a plain loop without Ray: ``paitune.trial.prepare_trial`` then
  ``trainer.run_epoch()`` per epoch, on one core. Its final accuracies must equal the sweep's
  (same configs, same seeds, one thread): ``floor_max_acc_diff`` checks it.

Trial compute is what the trials table reports: ``prune_seconds + train_seconds`` (train seconds
are the epochs' own timings). Utilization = compute / (wall x CPUs). Ray's overhead per trial =
(sweep wall - floor wall / parallelism) / trials: what the sweep costs beyond running the same
work on ``parallelism`` perfect workers. In full mode a second, smaller sweep of the same configs
splits the sweep's wall into a fixed part (per sweep) and a marginal part (per trial).

``--breakdown`` (sweeps with Tune's per-trial logs on, ``--tune-logs``, off by default) splits the
sweep's slot-seconds (wall x parallelism) with those logs: compute; in-trial overhead (inside the trial function but not pruning or training: imports
and data loading in a fresh actor, model build, proxies, checkpoints and reports); and
between-trial time (no trial function running on a slot: Tuner setup and teardown, actor start,
scheduling, the driver's bookkeeping). ``--profile`` adds the driver's top functions by own time.
Goal: utilization >= 0.8 and overhead <= 0.2 s per trial on a 2-core machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench._sweep_runs import SweepRun, run_sweep_inprocess, start_ray, stop_ray, tune_trial_times
from bench.common import bench_parser, report, set_threads

NAME = "sweep_efficiency"
GOAL_UTILIZATION = 0.8
GOAL_OVERHEAD_S = 0.2
SPACE = "default"
SAMPLER, SAMPLER_SEED, SCHEDULER = "random", 0, "fifo"


def sizes(quick: bool) -> tuple[int, int | None]:
    """(trials of the measured sweep, trials of the smaller sweep that separates fixed cost; None: skip).

    Requested trials: paitune adds its unpruned reference trials (one per seed) beside them, and
    every number below counts the trials that ran."""
    # 50 sampled trials of the default space (16 epochs; 10 configs x its 5 seeds), each with its
    # shuffle arm, + the dense references. Sizes are multiples of the seeds, as a sweep requires.
    return (5, None) if quick else (50, 10)


def run_floor(run: SweepRun) -> dict:
    """The sweep's trials, in its completion order, in one plain loop without Ray."""
    from paitune.trial import prepare_trial

    compute = prepare = 0.0
    accuracy_diffs = []
    start = time.perf_counter()
    for _, trial in run.trials.iterrows():
        config = json.loads(trial["config_json"])
        begun = time.perf_counter()
        prepared = prepare_trial(config)
        prepare += time.perf_counter() - begun
        epochs = [prepared.trainer.run_epoch() for _ in range(int(config["epochs"]))]
        compute += prepared.prune_seconds + sum(m.seconds for m in epochs)
        accuracy_diffs.append(abs(float(epochs[-1].val_acc) - float(trial["val_acc"])))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "compute_s": compute, "prepare_s": prepare, "max_acc_diff": max(accuracy_diffs)}


def breakdown(run: SweepRun, parallelism: int) -> dict | None:
    """The sweep's slot-seconds split into compute, in-trial overhead and between-trial time."""
    times = tune_trial_times(run.experiment_dir)
    if times is None:
        return None
    slots = run.wall_s * parallelism
    in_trial = float(times["in_trial_s"].sum())
    # The first trial of each trial actor (worker process) pays its imports and first data load.
    first = times.merge(run.trials[["trial_id", "finished_s"]], on="trial_id").sort_values("finished_s")
    first = first.groupby("pid", sort=False).head(1)
    return {
        "slot_s": slots,
        "compute_s": run.compute_s,
        "in_trial_overhead_s": in_trial - run.compute_s,
        "between_trials_s": slots - in_trial,
        "actors": int(times["pid"].nunique()),
        "actor_first_report_s": float(first["first_report_s"].sum()),
        "median_first_report_s": float(times["first_report_s"].median()),
        "reports": int(times["reports"].sum()),
    }


def sweep_row(label: str, run: SweepRun, cpus: int, parallelism: int) -> dict:
    return {
        "arm": label,
        "trials": len(run.trials),
        "parallel": parallelism,
        "wall_s": run.wall_s,
        "compute_s": run.compute_s,
        "utilization": run.compute_s / (run.wall_s * cpus),
        "s_per_trial": run.wall_s / len(run.trials),
    }


COLUMNS = [
    ("arm", "arm", ""),
    ("trials", "trials", "d"),
    ("parallel", "parallel", "d"),
    ("wall_s", "wall s", ".2f"),
    ("compute_s", "compute s", ".2f"),
    ("utilization", "utilization", ".3f"),
    ("s_per_trial", "wall s/trial", ".3f"),
]


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2: the goal's machine)")
    parser.add_argument("--profile", action="store_true", help="profile the driver during the main sweep")
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials of the measured sweep, a multiple of the space's 5 seeds (default 50; e.g. 200 to see whether per-trial cost grows)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="split the slot time with Tune's per-trial logs (runs the sweeps with --tune-logs, which cost time)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the default space, as `paitune sweep --set` (e.g. epochs=40: longer trials)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.cpus < 1:
        parser.error(f"--cpus must be >= 1, got {args.cpus}")
    trials, small = sizes(args.quick)
    trials = args.trials or trials
    parallelism = args.cpus  # one CPU per trial: paitune's default --cpus-per-trial
    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        ray_init = start_ray(args.cpus)
        try:
            options = dict(num_samples=trials, sampler=SAMPLER, scheduler=SCHEDULER, sampler_seed=SAMPLER_SEED,
                           max_concurrent=parallelism, sets=list(args.sets), tune_logs=args.breakdown)  # fmt: skip
            run = run_sweep_inprocess(SPACE, Path(tmp), "main", profile=args.profile, **options)
            split = breakdown(run, parallelism)
            small_run = None
            if small is not None and trials > small:  # the fixed part needs two sizes
                small_run = run_sweep_inprocess(SPACE, Path(tmp), "small", **{**options, "num_samples": small})
        finally:
            stop_ray()
        floor = run_floor(run)
    n = len(run.trials)
    rows = [sweep_row(f"ray sweep ({n} trials)", run, args.cpus, parallelism)]
    marginal = fixed = None
    if small_run is not None:
        rows.append(sweep_row(f"ray sweep ({len(small_run.trials)} trials)", small_run, args.cpus, parallelism))
        # wall = fixed + marginal x trials, through the two sweeps (the small one's configs are the
        # first ones of the big one: same sampler, same seed).
        marginal = (run.wall_s - small_run.wall_s) / (n - len(small_run.trials))
        fixed = small_run.wall_s - marginal * len(small_run.trials)
    rows.append({"arm": "sequential floor (no Ray)", "trials": n, "parallel": 1, "wall_s": floor["wall_s"],
                 "compute_s": floor["compute_s"], "utilization": floor["compute_s"] / floor["wall_s"],
                 "s_per_trial": floor["wall_s"] / n})  # fmt: skip
    utilization = rows[0]["utilization"]
    # Wall seconds per trial in each quarter of the sweep (by finishing order): flat unless some
    # per-trial cost grows with the trials already run.
    finished = run.trials["finished_s"].to_numpy()
    q = n // 4
    quarters = [float((finished[(i + 1) * q - 1] - finished[i * q]) / q) for i in range(4)] if q >= 2 else None
    overhead = (run.wall_s - floor["wall_s"] / parallelism) / n
    summary = {
        "ray_init_s": ray_init,
        "utilization": utilization,
        "overhead_s_per_trial": overhead,
        "floor_s_per_trial": floor["wall_s"] / n,
        "floor_prepare_s": floor["prepare_s"],
        "floor_max_acc_diff": floor["max_acc_diff"],
        "marginal_s_per_trial": marginal,
        "s_per_trial_by_quarter": quarters,
        "fixed_s_per_sweep": fixed,
        "goal_utilization_met": utilization >= GOAL_UTILIZATION,
        "goal_overhead_met": overhead <= GOAL_OVERHEAD_S,
    }
    if split is not None:
        summary.update({f"breakdown_{k}": v for k, v in split.items()})
    settings = {
        "space": SPACE, "sets": list(args.sets), "sampler": SAMPLER, "sampler_seed": SAMPLER_SEED, "scheduler": SCHEDULER,
        "cpus": args.cpus, "parallelism": parallelism, "trials": trials, "small_trials": small,
        "threads": args.threads, "goal_utilization": GOAL_UTILIZATION, "goal_overhead_s": GOAL_OVERHEAD_S,
        "breakdown": split, "tune_logs": args.breakdown, "driver_profile": run.profile,
        "timing": "wall_s: run_sweep call to return on an already running Ray (ray.init timed apart); "
                  "compute: prune_seconds + train_seconds of the trials table",
    }  # fmt: skip
    # A run with --set writes its own JSON beside the default one.
    name = NAME if not args.sets else f"{NAME}-" + "-".join(x.replace("=", "") for x in args.sets)
    report(
        name,
        args,
        settings=settings,
        rows=rows,
        summary=summary,
        columns=COLUMNS,
        title=f"Sweep efficiency: default space{' with ' + ', '.join(args.sets) if args.sets else ''}, {n} trials, {args.cpus} CPUs",
    )
    if run.profile:
        print("driver profile (own s, cumulative s, calls): top by own time, then paitune's by cumulative time")
        for entry in run.profile:
            print(f"  {entry['own_s']:8.2f}  {entry['cumulative_s']:8.2f}  {entry['calls']:7d}  {entry['function']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
