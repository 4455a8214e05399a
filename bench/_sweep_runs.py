"""Running paitune sweeps inside a benchmark process, on one shared local Ray instance.

Not a benchmark itself (``bench.run_all`` skips names starting with ``_``): the sweep and search
benchmarks use it. Ray starts once per benchmark (``start_ray``, timed on its own); every sweep
then goes through paitune's public entry points ``plan_sweep``/``run_sweep``, which join the
running instance instead of starting their own (``paitune.search.ray_procs.start_ray`` returns
early when Ray is initialized), so a sweep's wall time excludes ``ray.init`` by construction.

After a sweep, ``SweepRun`` reads what paitune wrote: the trials and epochs tables, the order in
which trials finished (the mtime of each trial's file in ``trials/``: the sink writes it when the
trial ends) and, where Tune wrote them, its per-trial result logs (``tune/trial_*/result.json``,
used only to split a sweep's wall time into in-trial and between-trial parts).
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import pstats
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


def start_ray(cpus: int) -> float:
    """Start a private local Ray with ``cpus`` CPUs; returns the seconds ``ray.init`` took."""
    import logging

    import ray

    # Ray announces its default token authentication on every new local cluster: expected here.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    start = time.perf_counter()
    # log_to_driver off: the trials' own log lines would bury the benchmark's tables.
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="warning", log_to_driver=False)
    return time.perf_counter() - start


def stop_ray() -> None:
    import ray

    ray.shutdown()


@dataclass
class SweepRun:
    """One finished sweep: its wall time and what it wrote."""

    name: str
    experiment_dir: Path
    started: float  # time.time() right before run_sweep
    wall_s: float  # run_sweep, start to return (Ray already running)
    trials: pd.DataFrame  # the trials table, in completion order, with a ``finished_s`` column
    epochs: pd.DataFrame
    profile: list[dict] = field(default_factory=list)  # the driver's top functions, when profiled

    @property
    def compute_s(self) -> float:
        """Seconds of trial compute: pruning plus training (the trials table's own timings)."""
        return float((self.trials["prune_seconds"].fillna(0) + self.trials["train_seconds"].fillna(0)).sum())

    @property
    def epochs_run(self) -> int:
        return int(self.trials["epochs_run"].sum())


def _completion_order(experiment_dir: Path, trials: pd.DataFrame, started: float) -> pd.DataFrame:
    """The trials sorted by when they ended, with ``finished_s``: seconds from the sweep's start.

    The sink writes ``trials/<trial_id>.parquet`` as the trial ends (last of its three files), so
    the file's mtime is the moment the driver saw the trial finish.
    """
    folder = experiment_dir / "trials"
    finished = {p.stem: p.stat().st_mtime_ns / 1e9 - started for p in folder.glob("*.parquet")}
    trials = trials.assign(finished_s=trials["trial_id"].map(finished))
    if trials["finished_s"].isna().any():
        missing = trials.loc[trials["finished_s"].isna(), "trial_id"].iloc[0]
        raise RuntimeError(f"no {folder}/{missing}.parquet to time the trial by (a compacted results folder?)")
    return trials.sort_values(["finished_s", "trial_id"], kind="stable").reset_index(drop=True)


def top_functions(profile: cProfile.Profile, limit: int = 20, *, only: str = "", key: str = "own_s") -> list[dict]:
    """The profiled functions with the most ``key`` time (own: exclusive; cumulative: with callees),
    those whose file path contains ``only``: where the driver's wall went."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        if only in filename:
            rows.append(
                {"function": f"{where}:{line}({function})", "calls": calls, "own_s": own, "cumulative_s": cumulative}
            )
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:limit]


def _read_folder(folder: Path) -> pd.DataFrame:
    from paitune.results.storage import locate, read_parquet_files

    return read_parquet_files(locate(folder)).to_pandas()


def run_sweep_inprocess(
    space: str,
    out: Path,
    name: str,
    *,
    num_samples: int | None,
    sampler: str,
    scheduler: str,
    sampler_seed: int,
    max_concurrent: int,
    sets: list[str] | None = None,
    profile: bool = False,
    tune_logs: bool = False,
) -> SweepRun:
    """Plan and run one sweep on the running Ray through paitune's public API; read its tables."""
    from paitune.config.sweep import SweepOptions
    from paitune.search.plan import plan_sweep
    from paitune.search.sweep import run_sweep

    options = SweepOptions(space=space, out=str(out), name=name, num_samples=num_samples, sampler=sampler,
                           scheduler=scheduler, sampler_seed=sampler_seed, max_concurrent=max_concurrent,
                           sets=list(sets or []), verbose=0, tune_logs=tune_logs,
                           compact_min=0)  # fmt: skip
    # compact_min=0: never compacted, the per-trial files' mtimes time the trials (_completion_order).
    plan = plan_sweep(options)
    profiler = cProfile.Profile() if profile else None
    sink = io.StringIO()  # the end-of-sweep summary table: not part of the benchmark's output
    started = time.time()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        if profiler:
            profiler.enable()
        try:
            status = run_sweep(plan, stream=sink)
        finally:
            if profiler:
                profiler.disable()
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"sweep {name} ended with status {status}:\n{sink.getvalue()[-2000:]}")
    experiment_dir = plan.experiment_dir
    # Read as paitune reads them (a pandas read of thousands of files would weigh on the driver's
    # memory, which sweep_scale measures for the next sweep).
    trials = _completion_order(experiment_dir, _read_folder(experiment_dir / "trials"), started)
    epochs = _read_folder(experiment_dir / "epochs")
    profile_rows = []
    if profiler:
        # Own time shows where the driver waits or works; paitune's functions by cumulative time
        # show which of its steps (searcher, sink, sweep setup) that work belongs to.
        profile_rows = top_functions(profiler) + top_functions(profiler, 15, only="paitune/", key="cumulative_s")
    return SweepRun(name, experiment_dir, started, wall, trials, epochs, profile_rows)


def tune_trial_times(experiment_dir: Path) -> pd.DataFrame | None:
    """Per trial, from Tune's result logs: the worker pid, seconds inside the trial function
    (``time_total_s``) and the first report's ``time_this_iter_s``. None when Tune wrote no logs."""
    rows = []
    for path in sorted((Path(experiment_dir) / "tune").glob("trial_*/result.json")):
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not results:
            continue
        rows.append({
            "trial_id": results[-1]["trial_id"],
            "pid": results[-1].get("pid"),
            "in_trial_s": float(results[-1]["time_total_s"]),
            "first_report_s": float(results[0]["time_this_iter_s"]),
            "reports": len(results),
        })  # fmt: skip
    return pd.DataFrame(rows) if rows else None


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
