"""GPU packing: trials per hour on one GPU with 1, 2, 4 and 8 trials packed onto it.

For each packing k: one ``paitune sweep`` through its public API (``plan_sweep`` + ``run_sweep``)
with ``--gpus-per-trial 1/k --max-concurrent k``, on one local Ray started once by this benchmark
with ``num_gpus=1`` and the machine's CPUs. Every packing runs the very same trials: random sampler
with a fixed seed, FIFO scheduler (no early stopping: every trial trains its full budget). A
packing's CPUs per trial are ``min(1, CPUs / k)``, so the GPU, not the CPUs, caps how many run at
once (a trial runs one torch thread either way).

The trials: the ``cifar`` preset's training (ResNet-20, SGD 0.1, momentum, cosine, batch 128) on
paitune's ``synthetic`` dataset, which has CIFAR's shape (3x32x32, 10 classes) and needs no
download, with the single-shot methods random/magnitude/snip/grasp (iterative ones would make
some trials many times longer than the others: stragglers, not packing, would set the wall time)
and the grad_norm/snip/synflow proxies. The synthetic train split is 512 samples (4 steps per
epoch), so one trial alone leaves a large GPU mostly idle between small kernels and its per-epoch
reports: the case packing is for.

Per packing: trials, wall seconds (``run_sweep`` call to return; Ray already running), trials per
hour (trials / wall), speed-up against k=1, the median trial length, the most trials observed
running at once and the devices the trials recorded (the trials table's ``device`` column). When
nvidia-smi is there, the GPU's mean utilization and peak memory during the sweep.

"Running at once" comes from Tune's own record of each trial in its experiment state
(``DIR/NAME/tune/experiment_state-*.json``, written at the end of the sweep): ``start_time``, set
on the driver when the trial's actor has started and holds its resources (Tune's RUNNING), and
``last_result_time``, when the driver received the trial's last result, before it releases the
trial's resources. Both are driver clock readings, so the intervals never overlap more than the
resources allowed, and each covers the whole of the trial's own work.

Without a CUDA GPU the benchmark prints why and writes a JSON whose summary says "skipped: no
CUDA GPU" (exit 0), unless ``--fake-gpus``: then Ray is told of one GPU that is not there, so the
whole placement path runs (Ray hands each trial a GPU id and fractions of that GPU; the trials find
no CUDA and record device cpu). The sweep joins the running Ray with ``address`` set to it, since
``plan_sweep`` refuses ``--gpus-per-trial`` without CUDA on a local run; ``start_ray`` then joins
the instance already initialized. In full mode an untimed one-trial sweep first warms the caches
(CUDA libraries, Ray's worker pool), so k=1, which runs first, does not pay for them.

``--mps`` runs every sweep with NVIDIA MPS on (``bench.mps``): packed trials' kernels can then run
side by side instead of taking turns. Its control daemon starts before Ray, so every trial's
worker connects to it; the run's settings record ``mps``. Compare one run with it and one without.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._sweep_runs import cpu_count
from bench.common import bench_parser, machine_facts, report, set_threads, write_json
from bench.mps import MpsUnavailable, mps_daemon

NAME = "gpu_packing"
PACKINGS = (1, 2, 4, 8)
SPACE = "cifar"
SAMPLER, SAMPLER_SEED, SCHEDULER = "random", 0, "fifo"
METHODS = ("random", "magnitude", "snip", "grasp")
SKIPPED = "no CUDA GPU"


def sizes(quick: bool) -> dict:
    """Requested trials, epochs per trial and the synthetic input shape.

    paitune adds one unpruned reference trial (one seed), so 23 requested make 24 trials: three
    full waves at k=8, no lone straggler at the end."""
    if quick:
        return {"trials": 3, "epochs": 1, "shape": [3, 8, 8]}
    return {"trials": 23, "epochs": 30, "shape": [3, 32, 32]}


def space_sets(epochs: int, shape: list[int], extra: list[str]) -> list[str]:
    """The ``--set`` overrides of the cifar preset (``extra`` last: it wins)."""
    return [
        "dataset=synthetic", "model=resnet20", f"epochs={epochs}", f"synthetic_shape=[{','.join(map(str, shape))}]",
        "seed=0", "scheduler={type: fifo}", "prune_batches=1", "prune_batch_size=128", "proxies=[grad_norm,snip,synflow]",
        f"params.method.choices=[{','.join(METHODS)}]", *extra,
    ]  # fmt: skip


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def start_ray(cpus: int, gpus: int) -> float:
    """A private local Ray with ``cpus`` CPUs and ``gpus`` GPUs (declared: Ray takes the number as
    given, whether or not CUDA sees them); returns the seconds ``ray.init`` took."""
    import logging

    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    start = time.perf_counter()
    # address="local": never join a cluster that a `ray start` recorded in /tmp/ray.
    ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level="warning",
             log_to_driver=False)  # fmt: skip
    return time.perf_counter() - start


def running_intervals(tune_dir: Path) -> list[tuple[str, float, float]]:
    """(trial id, start, end) per trial, on the driver's clock, from Tune's latest experiment state:
    start is when the trial became RUNNING (its actor up and holding its resources), end when the
    driver received its last result."""
    states = sorted(Path(tune_dir).glob("experiment_state-*.json"))
    if not states:
        raise RuntimeError(f"no experiment_state-*.json under {tune_dir}: Tune saved no experiment state")
    state = json.loads(states[-1].read_text())
    intervals = []
    for trial_json, metadata_json in state["trial_data"]:
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        start, end = metadata.get("start_time"), metadata.get("last_result_time")
        if start is None or end is None or not math.isfinite(end):
            continue  # never started, or never reported
        intervals.append((str(trial["trial_id"]), float(start), float(end)))
    return intervals


def max_running(intervals: list[tuple[str, float, float]]) -> int:
    """The most intervals that hold one instant (an interval that ends when another starts does not
    overlap it)."""
    events = sorted([(start, 1) for _, start, _ in intervals] + [(end, -1) for _, _, end in intervals])
    running = most = 0
    for _, step in events:  # at equal times the end (-1) sorts before the start (+1)
        running += step
        most = max(most, running)
    return most


class GpuSampler:
    """GPU utilization (%) and memory used (MiB) every half second from ``nvidia-smi``, while in a
    ``with`` block; ``summary()`` is empty when there is no nvidia-smi or it printed nothing."""

    def __init__(self, command: str = "nvidia-smi"):
        self.command = shutil.which(command)
        self.samples: list[tuple[float, float]] = []
        self._process = None
        self._thread = None

    def __enter__(self):
        if self.command is None:
            return self
        try:
            self._process = subprocess.Popen(
                [self.command, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0", "-lms", "500"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except OSError:
            self._process = None
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for line in self._process.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((float(parts[0]), float(parts[1])))
            except (IndexError, ValueError):
                continue  # "[N/A]" or a message instead of numbers

    def __exit__(self, *exc):
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._thread.join(timeout=5)
        return False

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"gpu_util_mean": sum(u for u, _ in self.samples) / len(self.samples),
                "gpu_mem_peak_mib": max(m for _, m in self.samples), "gpu_samples": len(self.samples)}  # fmt: skip


def run_packing(
    k: int, out: Path, name: str, *, trials: int, sets: list[str], cpus: int, max_concurrent: int, address: str | None
) -> dict:
    """One sweep with ``k`` trials per GPU; returns its row (plus its trial configs, for the check
    that every packing ran the same trials)."""
    import pandas as pd

    from paitune.config.sweep import SweepOptions
    from paitune.search.plan import plan_sweep
    from paitune.search.state_files import TUNE_DIR
    from paitune.search.sweep import run_sweep

    cpus_per_trial = min(1.0, cpus / max_concurrent)
    options = SweepOptions(space=SPACE, out=str(out), name=name, num_samples=trials, sampler=SAMPLER, scheduler=SCHEDULER,
                           sampler_seed=SAMPLER_SEED, max_concurrent=max_concurrent, gpus_per_trial=1.0 / k,
                           cpus_per_trial=cpus_per_trial, sets=list(sets), address=address, verbose=0)  # fmt: skip
    plan = plan_sweep(options)
    sink = io.StringIO()  # the end-of-sweep summary: not part of the benchmark's output
    with GpuSampler() as gpu, contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        status = run_sweep(plan, stream=sink)
        wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"sweep {name} ended with status {status}:\n{sink.getvalue()[-2000:]}")
    table = pd.read_parquet(plan.experiment_dir / "trials")
    intervals = running_intervals(plan.experiment_dir / TUNE_DIR)
    n = len(table)
    starts = [s for _, s, _ in intervals]
    ends = [e for _, _, e in intervals]
    lengths = sorted(e - s for _, s, e in intervals)
    return {
        "packing": k,
        "gpus_per_trial": 1.0 / k,
        "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial,
        "trials": n,
        "completed": int((table["status"] == "completed").sum()),
        "wall_s": wall,
        "trials_per_hour": n / wall * 3600,
        "span_s": max(ends) - min(starts) if intervals else None,  # first trial started -> last result
        "median_trial_s": lengths[len(lengths) // 2] if lengths else None,
        "max_running": max_running(intervals),
        "timed_trials": len(intervals),
        "devices": ",".join(sorted(str(d) for d in table["device"].dropna().unique())),
        "compute_s": float((table["prune_seconds"].fillna(0) + table["train_seconds"].fillna(0)).sum()),
        **gpu.summary(),
        # Each trial's [start, end] in seconds from the first start: what max_running counts.
        "timeline": [
            [round(s - min(starts), 3), round(e - min(starts), 3)] for _, s, e in sorted(intervals, key=lambda i: i[1])
        ],
        "_configs": sorted(table["config_hash"].astype(str)),
    }


COLUMNS = [
    ("packing", "per GPU", "d"),
    ("gpus_per_trial", "gpu/trial", ".3f"),
    ("max_concurrent", "max conc", "d"),
    ("trials", "trials", "d"),
    ("wall_s", "wall s", ".1f"),
    ("trials_per_hour", "trials/hour", ".0f"),
    ("speedup", "speed-up", ".2f"),
    ("median_trial_s", "median trial s", ".2f"),
    ("max_running", "max running", "d"),
    ("devices", "device", ""),
    ("gpu_util_mean", "GPU util %", ".0f"),
    ("gpu_mem_peak_mib", "GPU MiB", ".0f"),
]


def measured_result(path: Path) -> dict | None:
    """The JSON at ``path`` when it holds a run measured on a CUDA GPU, else None."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("rows") and result.get("settings", {}).get("cuda") is True else None


def skip(args, reason: str) -> int:
    """No GPU and no --fake-gpus: say so, write the JSON that says so, exit 0. A measured result
    already there (a GPU run's JSON copied back) is kept: a CPU machine cannot redo it."""
    print(
        f"{NAME}: skipped: {reason} (run it on a machine with a CUDA GPU, or add --fake-gpus to run the placement on CPU)"
    )
    previous = measured_result(Path(args.out) / f"{NAME}.json")
    if previous is not None:
        machine = previous.get("machine", {})
        print(f"kept {Path(args.out) / f'{NAME}.json'}: measured on {machine.get('cuda')} ({machine.get('finished')})")
        return 0
    path = write_json(NAME, {"benchmark": NAME, "quick": bool(args.quick), "machine": machine_facts(),
                             "settings": {"fake_gpus": False}, "rows": [],
                             "summary": {"skipped": reason}}, args.out)  # fmt: skip
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--fake-gpus",
        action="store_true",
        help="declare 1 GPU to Ray even without CUDA: the placement runs, the trials run on the CPU",
    )
    parser.add_argument(
        "--packings",
        type=int,
        nargs="+",
        default=list(PACKINGS),
        metavar="K",
        help=f"trials per GPU to measure, in this order (default {' '.join(map(str, PACKINGS))})",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="--max-concurrent of every sweep (default: K, the packing; larger shows the GPU alone caps it)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="requested trials per sweep (default 23 full, 3 quick; +1 reference)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 30 full, 1 quick)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs given to Ray (default: all this process may use)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up sweep of a full run")
    parser.add_argument(
        "--mps",
        action="store_true",
        help="run every sweep with NVIDIA MPS on (its control daemon started before Ray, quit at the end)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the benchmark's space, as `paitune sweep --set` (e.g. model=vgg16)",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if any(k < 1 for k in args.packings):
        parser.error(f"--packings must be >= 1, got {args.packings}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        parser.error(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    cuda = cuda_available()
    if not cuda and not args.fake_gpus:
        return skip(args, SKIPPED)
    if args.mps and not cuda:
        parser.error("--mps needs a CUDA GPU (with --fake-gpus the trials run on the CPU)")
    size = sizes(args.quick)
    trials = args.trials or size["trials"]
    epochs = args.epochs or size["epochs"]
    cpus = args.cpus or cpu_count()
    sets = space_sets(epochs, size["shape"], args.sets)
    warmup = not (args.quick or args.no_warmup)
    settings = {
        "space": SPACE, "sets": sets, "sampler": SAMPLER, "sampler_seed": SAMPLER_SEED, "scheduler": SCHEDULER,
        "requested_trials": trials, "epochs": epochs, "packings": list(args.packings), "max_concurrent": args.max_concurrent,
        "ray_cpus": cpus, "ray_gpus": 1, "fake_gpus": bool(args.fake_gpus), "cuda": cuda, "threads": args.threads,
        "warmup": warmup, "mps": bool(args.mps),
        "timing": "wall_s: run_sweep call to return on an already running Ray (ray.init timed apart); "
                  "max_running and median_trial_s: Tune's start_time/last_result_time per trial (driver clock)",
    }  # fmt: skip
    rows: list[dict] = []
    import ray

    with tempfile.TemporaryDirectory(prefix="paitune-bench-") as tmp, contextlib.ExitStack() as stack:
        if args.mps:  # before Ray starts: its workers inherit the daemon's pipe folder
            try:
                settings.update(stack.enter_context(mps_daemon(Path(tmp))))
            except MpsUnavailable as error:
                print(f"{NAME}: --mps: {error}", file=sys.stderr)
                return 2
        settings["ray_init_s"] = start_ray(cpus, 1)
        try:
            # With CUDA the sweep runs as a local one would (plan_sweep's CUDA check passes and
            # start_ray joins the running instance); without, it names the running instance.
            address = None if cuda else ray.get_runtime_context().gcs_address
            common = dict(sets=sets, cpus=cpus, address=address)
            if warmup:
                begun = time.perf_counter()
                run_packing(1, Path(tmp), "warmup", trials=1, max_concurrent=1, **common)
                settings["warmup_s"] = time.perf_counter() - begun
            for k in args.packings:
                row = run_packing(
                    k, Path(tmp), f"pack{k}", trials=trials, max_concurrent=args.max_concurrent or k, **common
                )
                rows.append(row)
                print(f"packing {k}: {row['trials']} trials in {row['wall_s']:.1f} s, at most {row['max_running']} at once",
                      flush=True)  # fmt: skip
                # What is done so far survives a run cut short (a device call's time limit).
                write_json(f"{NAME}.partial", {"settings": settings, "rows": rows}, args.out)
        finally:
            ray.shutdown()
    configs = [row.pop("_configs") for row in rows]
    base = next((r for r in rows if r["packing"] == 1), None)
    for row in rows:
        row["speedup"] = row["trials_per_hour"] / base["trials_per_hour"] if base else None
    best = max(rows, key=lambda r: r["trials_per_hour"])
    summary = {
        "same_trials_every_packing": all(c == configs[0] for c in configs),
        "all_completed": all(r["completed"] == r["trials"] for r in rows),
        "packing_within_gpu": all(r["max_running"] <= r["packing"] for r in rows),
        "best_packing": best["packing"],
        "best_trials_per_hour": best["trials_per_hour"],
        "best_speedup": best["speedup"],
        "devices": ",".join(sorted({d for r in rows for d in r["devices"].split(",") if d})),
    }
    # The values the sweeps ran with: a --set of the same key comes later and wins.
    model, shape, epochs = (next(x.split("=", 1)[1] for x in reversed(sets) if x.startswith(f"{key}="))
                            for key in ("model", "synthetic_shape", "epochs"))  # fmt: skip
    device = "fake GPU (Ray told of 1 GPU; trials on CPU)" if not cuda else machine_facts()["cuda"]
    device += ", MPS on" if args.mps else ""
    report(NAME, args, settings=settings, rows=rows, summary=summary, columns=COLUMNS,
           title=f"GPU packing: {rows[0]['trials']} trials of {model} on synthetic {shape} "
                 f"x {epochs} epochs, 1 GPU ({device}), {cpus} CPUs")  # fmt: skip
    (Path(args.out) / f"{NAME}.partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
