"""Sweep scale: does the driver's cost per trial stay flat as a sweep grows?

Short trials make the driver's own cost show: the default space with one epoch, no proxies, no
control arms and the learning rate searched on a log scale (``SETS``: a space that never runs out
of new configs), FIFO, two trials at a time, one sweep per sampler and size. Each sweep runs in this process on one shared
local Ray, so the driver is this process: a thread samples its CPU time (every thread of it: Tune's
loop, the searcher, the samplers, the Parquet writer) twice a second.

Per quarter of the sweep's finished trials (in the order they ended, from the trial files' times;
the first quarter timed from the first trial's end, leaving out the sweep's fixed start): wall
seconds per 250 trials, and the driver's CPU milliseconds per trial (its CPU time at the
quarter's first and last finish, interpolated between samples). ``growth`` is the last quarter's
wall per trial over the first's. ``state KB/trial``: the size of Tune's last experiment snapshot
(it lists every trial of the sweep) over the trials it lists.

Goals: growth <= 1.5 for TPE at 3,000 trials; driver CPU per trial < 50 ms at 10,000 trials.
A 10,000-trial sweep of one-epoch digits trials takes about 10 minutes on 2 cores; ``--trials`` picks
the sizes (default 1000 and 3000).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench._sweep_runs import run_sweep_inprocess, start_ray, stop_ray
from bench.common import bench_parser, report, set_threads

NAME = "sweep_scale"
# lr searched on a log scale: a space that cannot run out of new configs, so a sweep of any size
# measures the sampler and the driver, not the end of a finite space.
SETS = [
    "epochs=1",
    "proxies=[]",
    "params.control.choices=[none]",
    "params.lr={type: float, low: 0.01, high: 0.2, log: true}",
]
GOAL_GROWTH = 1.5
GOAL_CPU_MS = 50.0


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux's /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return math.nan


class CpuSampler:
    """This process's CPU seconds and resident memory over wall time, sampled on a thread."""

    def __init__(self, period_s: float = 0.5):
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self.rss: list[tuple[float, float]] = []  # (wall, resident MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), time.process_time()))
            self.rss.append((time.time(), resident_mib()))
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), time.process_time()))

    def cpu_at(self, when: np.ndarray) -> np.ndarray:
        wall, cpu = np.array(self.samples).T
        return np.interp(when, wall, cpu)

    def rss_at(self, when: np.ndarray) -> np.ndarray:
        wall, rss = np.array(self.rss).T
        return np.interp(when, wall, rss)


def rss_growth(finished_s: np.ndarray, started: float, sampler: CpuSampler) -> dict:
    """The driver's resident memory when the first quarter of the trials had finished and at the
    last finish, and its growth per trial between the two (KiB)."""
    ends = np.sort(finished_s) + started
    first = ends[len(ends) // 4 - 1] if len(ends) >= 4 else ends[0]
    at_first, at_last = sampler.rss_at(np.array([first, ends[-1]]))
    between = len(ends) - len(ends) // 4
    return {
        "rss_q1_mib": at_first,
        "rss_end_mib": at_last,
        "rss_kib_per_trial": 1024 * (at_last - at_first) / max(between, 1),
    }


def quarters(finished_s: np.ndarray, started: float, cpu: CpuSampler) -> list[dict]:
    """Wall per 250 trials and driver CPU ms per trial, for each quarter of the finished trials."""
    ends = np.sort(finished_s)
    n = len(ends)
    cuts = [0, n // 4, n // 2, (3 * n) // 4, n]
    out = []
    for q in range(4):
        # The first quarter is timed from the first trial's end: the sweep's fixed start (Ray's
        # workers importing torch) is not a per-trial cost.
        first, last = max(cuts[q], 1), cuts[q + 1]
        begin = ends[first - 1]
        count = last - first
        wall = ends[last - 1] - begin
        cpu_s = np.diff(cpu.cpu_at(np.array([begin, ends[last - 1]]) + started))[0]
        out.append(
            {"trials": count, "wall_per_250_s": 250 * wall / count, "driver_cpu_ms_per_trial": 1000 * cpu_s / count}
        )
    return out


def snapshot_kb_per_trial(experiment_dir: Path) -> float:
    """Kilobytes per listed trial of Tune's newest experiment snapshot of the sweep."""
    newest = max((experiment_dir / "tune").glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    return newest.stat().st_size / 1024 / len(json.loads(newest.read_text())["trial_data"])


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--trials", default="1000,3000", help="comma-separated sweep sizes (default 1000,3000)")
    parser.add_argument(
        "--samplers", default="tpe,random,nsga2", help="comma-separated samplers (default tpe,random,nsga2)"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    sizes = [40] if args.quick else [int(n) for n in args.trials.split(",")]
    samplers = ["tpe"] if args.quick else args.samplers.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp:
        ray_init = start_ray(2)
        try:
            for size in sizes:
                for sampler in samplers:
                    with CpuSampler() as cpu:
                        run = run_sweep_inprocess("default", Path(tmp), f"{sampler}-{size}", num_samples=size,
                                                  sampler=sampler, scheduler="fifo", sampler_seed=0,
                                                  max_concurrent=2, sets=SETS)  # fmt: skip
                    sampled = run.trials[run.trials["method"] != "dense"]
                    q = quarters(sampled["finished_s"].to_numpy(), run.started, cpu)
                    rows.append({
                        "sampler": sampler, "trials": len(sampled), "wall_s": run.wall_s,
                        **{f"q{i + 1}_wall_per_250_s": q[i]["wall_per_250_s"] for i in range(4)},
                        **{f"q{i + 1}_cpu_ms": q[i]["driver_cpu_ms_per_trial"] for i in range(4)},
                        "growth": q[3]["wall_per_250_s"] / q[0]["wall_per_250_s"],
                        "cpu_ms_per_trial": 1000 * (cpu.samples[-1][1] - cpu.samples[0][1]) / len(sampled),
                        "state_kb_per_trial": snapshot_kb_per_trial(run.experiment_dir),
                        **rss_growth(sampled["finished_s"].to_numpy(), run.started, cpu),
                    })  # fmt: skip
        finally:
            stop_ray()
    tpe = [r for r in rows if r["sampler"] == "tpe"]
    largest = max(rows, key=lambda r: r["trials"]) if rows else None
    summary = {
        "tpe_growth_at_largest": max(tpe, key=lambda r: r["trials"])["growth"] if tpe else math.nan,
        "goal_growth": GOAL_GROWTH,
        "largest_trials": largest["trials"] if largest else 0,
        "driver_cpu_ms_per_trial_at_largest": max(r["q4_cpu_ms"] for r in rows if r["trials"] == largest["trials"])
        if largest
        else math.nan,
        "goal_cpu_ms": GOAL_CPU_MS,
        "ray_init_s": ray_init,
    }
    columns = [("sampler", "sampler", ""), ("trials", "trials", "d"), ("wall_s", "wall s", ".0f")]
    columns += [(f"q{i}_wall_per_250_s", f"q{i} s/250", ".1f") for i in range(1, 5)]
    columns += [(f"q{i}_cpu_ms", f"q{i} cpu ms", ".1f") for i in range(1, 5)]
    columns += [("growth", "q4/q1", ".2f"), ("state_kb_per_trial", "state KB/trial", ".1f")]
    columns += [("rss_q1_mib", "RSS q1 MiB", ".0f"), ("rss_end_mib", "RSS end MiB", ".0f")]
    columns += [("rss_kib_per_trial", "RSS KiB/trial", ".1f")]
    report(NAME, args, settings={"space": "default", "sets": SETS, "scheduler": "fifo", "max_concurrent": 2,
                                 "sizes": sizes, "samplers": samplers},
           rows=rows, summary=summary, columns=columns,
           title="Sweep scale: wall and driver CPU per trial by quarter of the sweep")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
