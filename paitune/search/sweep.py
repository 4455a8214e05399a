"""``paitune sweep``: validate everything, then run Ray Tune + Optuna + ASHA into Parquet.

``plan_sweep(options)`` checks the space, the arguments and the output directory without
starting or writing anything; bad input raises ``PaituneError``. ``run_sweep(plan)`` takes the
experiment lock, starts (or joins) Ray, runs the Tuner and prints a summary.

Layout of ``DIR/NAME/``: ``trials/ epochs/ layers/`` (Parquet, the results), paitune's own state
— ``sweep.json`` (the resolved space and options, so ``--resume`` needs nothing else),
``optuna.journal`` (the Optuna study, see ``paitune.search.study_store``: the sampler's history
survives a driver crash), ``asha.json``
(ASHA's rungs), ``ray.pids`` (the Ray processes a running driver started), ``.lock`` — and
``tune/``, Tune's experiment (its snapshots and per-trial checkpoints). Tune's restore copies every
``*.json``/``*.pkl`` at the top of its experiment folder into its staging folder and uploads them
back, so paitune's files must not sit there: they live one level up.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from paitune.config import TRIAL_DEFAULTS
from paitune.config.sweep import SCHEDULERS, SweepOptions
from paitune.errors import PaituneError, unknown_choice
from paitune.plugins import load_plugins
from paitune.results.storage import Location, is_uri, locate
from paitune.search.internals import check_versions
from paitune.search.lock import SweepLock, lock_holder, refusal
from paitune.search.ray_procs import forget_processes, reap_orphans, start_ray
from paitune.search.samplers import SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS
from paitune.search.study_store import STUDY_FILE, study_storage
from paitune.search.tune_state import serialized_snapshots, set_aside_broken_snapshots
from paitune.spaces import CompiledSpace, Space, compile_space, load_space
from paitune.spaces.check import possible_values
from paitune.spaces.compile import SEED_PARAM, SLOPE_PARAM, layer_param, model_layer_shapes
from paitune.spaces.loader import build_space
from paitune.spaces.schema import PerLayerAllocation

MANIFEST = "sweep.json"
TUNE_DIR = "tune"  # Tune's experiment folder inside DIR/NAME
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class SweepPlan:
    options: SweepOptions
    space: Space
    compiled: CompiledSpace
    experiment_dir: Path  # paitune's state (local); also the results, unless --out is a URI
    num_samples: int
    max_concurrent: int
    scheduler: str
    search_params: list[str]
    storage_path: str
    dense_references: list[dict[str, Any]] = field(default_factory=list)  # run besides num_samples

    @functools.cached_property
    def results(self) -> Location:
        """Where the three tables go: DIR/NAME, local or on the --out URI (opened once: opening an
        s3:// URI may ask the store for the bucket's region)."""
        return (
            locate(self.options.out).join(self.options.name)
            if is_uri(self.options.out)
            else locate(self.experiment_dir)
        )

    @property
    def arms_per_trial(self) -> int:
        """Control arms each sampled trial runs beside it (0 for methods controls do not apply to)."""
        return len(self.compiled.control_arms)

    @property
    def total_trials(self) -> int:
        """Trials Tune runs at most: the sampled ones, their control arms, and the dense references."""
        return self.num_samples * (1 + self.arms_per_trial) + len(self.dense_references)

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.space.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.space.objectives]


def _reachable_uri(out: str) -> Location:
    """A URI --out that pyarrow can open and reach (credentials, network), checked read-only."""
    location = locate(out)
    try:
        info = location.info()
    except Exception as err:  # auth, network, missing bucket: pyarrow raises OSError and friends
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PaituneError(f"--out {out}: cannot reach it: {first}") from None
    if info.type == pafs.FileType.File:
        raise PaituneError(f"--out {out}: is a file, not a directory")
    return location


def default_state_dir(out: str) -> Path:
    """Local home of paitune's state for the URI ``out``: one folder per URI under the user's cache."""
    digest = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "paitune" / "sweeps" / digest


def _writable_dir(out: str) -> Path:
    path = Path(out).expanduser().resolve()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise PaituneError(f"--out {out}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PaituneError(f"--out {out}: {probe} is not writable; pick a directory you can write to")
    return path


def _check_data(space: Space, compiled: CompiledSpace) -> None:
    """Vision datasets must be on disk before the sweep starts (nothing downloads mid-sweep)."""
    from paitune.data.vision import VISION_DATASETS, resolve_data_root

    datasets = {space.settings.get("dataset", TRIAL_DEFAULTS["dataset"])}
    if "dataset" in space.params:
        from paitune.spaces.check import possible_values

        datasets = set(possible_values(space.params["dataset"]))
    root = resolve_data_root(space.settings.get("data_root"))
    for name in sorted(d for d in datasets if d in VISION_DATASETS):
        spec = VISION_DATASETS[name]
        missing = [f for f in spec.files if not (root / spec.folder / f).exists()]
        if missing:
            raise PaituneError(
                f"dataset {name}: {root / spec.folder / missing[0]} not found; set data_root to the folder holding {spec.folder} (--set data_root=PATH)"
            )


def _search_params(space: Space) -> list[str]:
    """Raw Optuna parameters that are not trial config keys (the searched allocation's)."""
    family = space.allocation_search
    if family is None:
        return []
    if not isinstance(family, PerLayerAllocation):
        return [SLOPE_PARAM]
    models = {space.settings.get("model", TRIAL_DEFAULTS["model"])}
    if "model" in space.params:
        from paitune.spaces.check import possible_values

        models = set(possible_values(space.params["model"]))
    dataset = space.settings.get("dataset", TRIAL_DEFAULTS["dataset"])
    shape = tuple(space.settings.get("synthetic_shape", TRIAL_DEFAULTS["synthetic_shape"]))
    classes = int(space.settings.get("synthetic_classes", TRIAL_DEFAULTS["synthetic_classes"]))
    most = max(len(model_layer_shapes(m, dataset, shape, classes)) for m in models)
    return [layer_param(i) for i in range(most)]


def _read_remote_manifest(remote: Location) -> dict[str, Any]:
    try:
        with remote.fs.open_input_stream(remote.join(MANIFEST).path) as stream:
            return json.loads(stream.read().decode())
    except (OSError, ValueError) as err:
        raise PaituneError(f"--resume: cannot read {remote.join(MANIFEST)}: {err}") from None


def _read_manifest(experiment_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((experiment_dir / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise PaituneError(f"--resume: cannot read {experiment_dir / MANIFEST}: {err}") from None


def plan_sweep(options: SweepOptions) -> SweepPlan:
    """Validate the space, the arguments and the output directory; start and write nothing."""
    check_versions()
    load_plugins()
    if not NAME_PATTERN.match(options.name or ""):
        raise PaituneError(
            f"--name {options.name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    remote = None
    if is_uri(options.out):
        remote = _reachable_uri(options.out).join(options.name)
        out = _writable_dir(options.state_dir or str(default_state_dir(options.out)))
    else:
        out = _writable_dir(options.out)
    experiment_dir = out / options.name
    holder = lock_holder(experiment_dir)
    if holder is not None:
        raise refusal(options.name, holder)
    exists = (experiment_dir / MANIFEST).exists()
    if remote is not None and not exists:
        exists = remote.join(MANIFEST).exists()
    where = remote.uri.rsplit("/", 1)[0] if remote is not None else out
    space_ref, sets = options.space or "default", list(options.sets)
    if options.resume:
        if not exists:
            raise PaituneError(f"--resume: no sweep {options.name!r} under {where}; start it without --resume first")
        manifest = (
            _read_manifest(experiment_dir) if (experiment_dir / MANIFEST).exists() else _read_remote_manifest(remote)
        )
        if options.space or options.sets:
            raise PaituneError("--resume continues the sweep as it was planned; drop SPACE and --set")
        saved = SweepOptions(**manifest["options"])
        saved.resume, saved.address, saved.verbose = True, options.address, options.verbose
        saved.state_dir = options.state_dir
        options = saved
    elif exists:
        raise PaituneError(
            f"a sweep named {options.name!r} already exists under {where}; continue it with --resume or pick another --name"
        )
    if options.resume:
        # The space as it was planned, not as the file or preset reads today.
        space = build_space(manifest["space"], str(experiment_dir / MANIFEST))
    else:
        space = load_space(space_ref, sets)
    compiled = compile_space(space)
    if options.sampler not in SAMPLERS:
        raise unknown_choice("sampler", options.sampler, SAMPLERS)
    if options.sampler in SINGLE_OBJECTIVE_SAMPLERS and space.multi_objective:
        raise PaituneError(
            f"--sampler {options.sampler} handles one objective; the space has {len(space.objectives)}: use nsga2 or tpe"
        )
    scheduler = options.scheduler or space.scheduler.type
    if scheduler not in SCHEDULERS:
        raise unknown_choice("scheduler", scheduler, SCHEDULERS)
    if scheduler == "asha" and "imp" in _possible_methods(space):
        # An IMP trial reports one whole round per step and needs more steps than the epochs
        # budget; ASHA's rungs would compare its rounds with other methods' epochs.
        raise PaituneError(
            "method imp reports one round per step, a different budget unit than epochs: "
            "use --scheduler fifo (or scheduler: {type: fifo}) or put imp in a space of its own"
        )
    num_samples = options.num_samples if options.num_samples is not None else space.num_samples
    if num_samples < 1:
        raise PaituneError(f"--num-samples must be >= 1, got {num_samples}")
    if options.sampler == "grid":
        points = sum(len(compiled.for_context(context).grid_points()) for context in compiled.contexts())
        num_samples = min(num_samples, points) if options.num_samples is not None else points
    if not options.cpus_per_trial > 0:
        raise PaituneError(f"--cpus-per-trial must be > 0, got {options.cpus_per_trial}")
    if options.gpus_per_trial < 0:
        raise PaituneError(f"--gpus-per-trial must be >= 0, got {options.gpus_per_trial}")
    if options.gpus_per_trial > 0 and options.address is None:
        import torch

        if not torch.cuda.is_available():
            raise PaituneError(
                "--gpus-per-trial > 0 but torch sees no CUDA GPU here; drop it or run on a cluster with --address"
            )
    if not options.checkpoint_every_s >= 0:
        raise PaituneError(f"--checkpoint-every must be >= 0 seconds, got {options.checkpoint_every_s}")
    if not options.report_every_s >= 0:
        raise PaituneError(f"--report-every must be >= 0 seconds, got {options.report_every_s}")
    if options.max_failures < 0:
        raise PaituneError(f"--max-failures must be >= 0, got {options.max_failures}")
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise PaituneError(f"--max-concurrent must be >= 1, got {options.max_concurrent}")
    max_concurrent = options.max_concurrent or space.max_concurrent
    if max_concurrent is None:
        cpus = os.cpu_count() or 1
        max_concurrent = max(1, int(cpus // options.cpus_per_trial)) if options.address is None else num_samples
    if max_concurrent < 1:
        raise PaituneError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if options.address is None:
        _check_data(space, compiled)
    if not options.resume:  # a resumed sweep's space was checked when the sweep started
        from paitune.search.combinations import check_combinations

        check_combinations(compiled)
    storage = options.storage or (options.out.rstrip("/") if remote is not None else str(out))
    return SweepPlan(
        options=options,
        space=space,
        compiled=compiled,
        experiment_dir=experiment_dir,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        scheduler=scheduler,
        search_params=_search_params(space),
        storage_path=storage,
        dense_references=compiled.dense_references(),
    )


def build_searcher(plan: SweepPlan, tune_trials=None):
    import optuna

    from paitune.search.contexts import ContextSearch
    from paitune.search.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(plan.experiment_dir)
    metric = plan.metrics if plan.space.multi_objective else plan.metrics[0]
    mode = plan.modes if plan.space.multi_objective else plan.modes[0]
    base_seed = plan.options.sampler_seed

    def sampler_factory(index: int):
        # Each context's study has its own sampler, seeded apart from the others'.
        seed = None if base_seed is None else base_seed + 1000 * index
        return make_sampler(plan.options.sampler, seed=seed, n_objectives=len(plan.metrics))

    return ContextSearch(
        plan.compiled, metric=metric, mode=mode, sampler_factory=sampler_factory, storage=storage,
        study_name=plan.options.name, grid=plan.options.sampler == "grid", dense=plan.dense_references,
        budget=plan.num_samples, results=plan.results, tune_trials=tune_trials,
    )  # fmt: skip


def _possible_methods(space) -> set:
    param = space.params.get("method")
    if param is None:
        return {space.settings.get("method", TRIAL_DEFAULTS["method"])}
    return set(possible_values(param))


def build_scheduler(plan: SweepPlan, tune_trials=None):
    from paitune.search.asha import STATE_FILE, ContextASHA, PaiFIFO

    if plan.scheduler == "fifo":
        return PaiFIFO(tune_trials=tune_trials)
    settings = plan.space.scheduler
    epochs = int(plan.space.settings.get("epochs", TRIAL_DEFAULTS["epochs"]))
    return ContextASHA(
        time_attr="epoch", metric=plan.metrics[0], mode=plan.modes[0], max_t=epochs,
        grace_period=settings.grace_period, reduction_factor=settings.reduction_factor,
        min_rung_trials=settings.min_rung_trials, state_path=plan.experiment_dir / STATE_FILE, tune_trials=tune_trials,
    )  # fmt: skip


def trial_dirname(trial) -> str:
    """Short trial directories (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


def tune_storage(plan: SweepPlan) -> tuple[str, Any]:
    """Tune's storage (path, pyarrow filesystem or None): its experiment is ``<storage>/NAME/tune``
    (DIR/NAME/tune by default). A URI is opened here and handed to Tune as a filesystem plus a
    path, so URI options (``?endpoint_override=...``) survive Tune's own path joins."""
    if not is_uri(plan.storage_path):
        return f"{plan.storage_path.rstrip('/')}/{plan.options.name}", None
    where = locate(plan.storage_path).join(plan.options.name)
    return where.path, where.fs


def tune_loggers(options: SweepOptions) -> list:
    """Tune's per-trial loggers the options ask for: --tune-logs (result.json and progress.csv),
    --tensorboard (event files)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    loggers = [JsonLoggerCallback(), CSVLoggerCallback()] if options.tune_logs else []
    return loggers + ([TBXLoggerCallback()] if options.tensorboard else [])


def build_tuner(plan: SweepPlan):
    from ray import tune

    from paitune.results.rows import trials_schema
    from paitune.search.interrupt import HandToTune
    from paitune.search.lean_state import LeanTrialState
    from paitune.search.limiter import ResumableLimiter
    from paitune.search.sink import ParquetSink
    from paitune.search.trainable import run_trial
    from paitune.search.tune_trials import TuneTrialIds

    proxies = list(plan.space.settings.get("proxies", TRIAL_DEFAULTS["proxies"]))
    sink = ParquetSink(plan.results, plan.options.name, trials_schema(plan.search_params, proxies), plan.search_params,
                       background=True)  # fmt: skip
    # The scheduler records every trial Tune adds (also those a resume restores); the searcher
    # reads them to square the study with the restored Tune (see paitune.search.searcher).
    tune_trials = TuneTrialIds()
    scheduler = build_scheduler(plan, tune_trials)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            checkpoint_every_s=plan.options.checkpoint_every_s,
            report_every_s=plan.options.report_every_s,
            # Where the scheduler decides: a trial must report these epochs, and need not report others.
            report_epochs=scheduler.decision_epochs(),
        ),
        {"cpu": plan.options.cpus_per_trial, "gpu": plan.options.gpus_per_trial},
    )
    if plan.options.verbose >= 2:  # --verbose: Tune's own table, a row per trial
        reporter = tune.CLIReporter(
            metric_columns={"epoch": "ep", plan.metrics[0]: plan.metrics[0]},
            parameter_columns={k: k for k in ("method", "sparsity", "allocation", "control", SEED_PARAM)},
            max_report_frequency=15,
            print_intermediate_tables=True,
        )
    else:
        from paitune.search.progress import CompactProgress

        reporter = CompactProgress(total=plan.total_trials, metric=plan.metrics[0], mode=plan.modes[0])
    storage_path, storage_filesystem = tune_storage(plan)
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        # Tune's own per-trial logs are off unless asked for (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS,
        # set in execute_sweep): they repeat what the Parquet tables hold, Tune re-uploads every
        # trial's log folder at each experiment snapshot, and the TensorBoard writer alone costs
        # the driver ~4 ms per result.
        # LeanTrialState last: it strips each result once the sink and the loggers have read it.
        callbacks=[sink, HandToTune(), *tune_loggers(plan.options), LeanTrialState()],
        failure_config=tune.FailureConfig(max_failures=plan.options.max_failures),
        # Every epoch's checkpoint is kept. Tune deletes checkpoints beyond num_to_keep as soon as
        # a newer one lands, while its experiment snapshot (what --resume restores) still names
        # the older one until the next snapshot: a driver killed in between leaves trials whose
        # checkpoint is gone, and they fail on resume. Kept checkpoints cost disk (an MLP's are
        # kilobytes); DIR/NAME/tune can be deleted once the sweep is done.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        progress_reporter=reporter,
        verbose=min(plan.options.verbose, 1),
    )
    if plan.options.resume:
        path = f"{storage_path}/{TUNE_DIR}"
        _, whole = set_aside_broken_snapshots(path, storage_filesystem or pafs.LocalFileSystem())
        # Without a whole snapshot Tune has nothing to restore: a fresh Tune run, whose searcher
        # squares the study with the tables and reruns what was never written.
        if whole and tune.Tuner.can_restore(path, storage_filesystem=storage_filesystem):
            restored = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                          storage_filesystem=storage_filesystem)  # fmt: skip
            return restored, sink
    tune_config = tune.TuneConfig(
        search_alg=ResumableLimiter(build_searcher(plan, tune_trials), max_concurrent=plan.max_concurrent),
        scheduler=scheduler,
        # The searcher keeps the budget (plan.num_samples, side trials on top) and ends the search: after a restart
        # Tune's own count comes from its snapshot, which may miss trials that finished after it.
        num_samples=-1,
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config), sink


def _write_manifest(plan: SweepPlan) -> None:
    manifest = {"options": asdict(plan.options), "space": plan.space.model_dump(mode="json")}
    tmp = plan.experiment_dir / f".{MANIFEST}.tmp"
    # No sort_keys: the order of params is the order they are sampled in.
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, plan.experiment_dir / MANIFEST)


def _state_files() -> tuple[str, ...]:
    """What a resume needs besides Tune's own experiment."""
    from paitune.search.asha import STATE_FILES

    return (MANIFEST, STUDY_FILE, *STATE_FILES)


def mirror_state(plan: SweepPlan) -> None:
    """With a URI --out, copy paitune's state files next to the tables, so the experiment there is
    whole (and a resume on another machine finds the study as it was when the sweep stopped)."""
    if plan.results.local:
        return
    plan.results.fs.create_dir(plan.results.path, recursive=True)
    for name in _state_files():
        source = plan.experiment_dir / name
        if source.exists():
            pafs.copy_files(str(source), plan.results.join(name).path,
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=plan.results.fs)  # fmt: skip


def fetch_state(plan: SweepPlan) -> None:
    """On --resume with a URI --out and no local state (another machine): fetch the mirrored state."""
    if plan.results.local or (plan.experiment_dir / MANIFEST).exists():
        return
    plan.experiment_dir.mkdir(parents=True, exist_ok=True)
    for name in _state_files():
        source = plan.results.join(name)
        if source.exists():
            pafs.copy_files(source.path, str(plan.experiment_dir / name),
                            source_filesystem=plan.results.fs, destination_filesystem=pafs.LocalFileSystem())  # fmt: skip


def _close_study(plan: SweepPlan) -> None:
    """The sweep has ended: no trial of the study can still be running."""
    from paitune.search.contexts import load_context_studies
    from paitune.search.searcher import fail_unfinished

    for study in load_context_studies(study_storage(plan.experiment_dir), plan.options.name).values():
        fail_unfinished(study)


def execute_sweep(plan: SweepPlan, stops=None):
    """Run the planned sweep under the experiment lock; returns Tune's ResultGrid (None when
    ``stops``, a ``StopRequests``, asked to stop before Tune began)."""
    created = not plan.experiment_dir.exists()
    # The old-style reporter prints the few columns we chose; the default new output engine would
    # print every reported key of every trial.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # see build_tuner
    if not (plan.options.tune_logs or plan.options.tensorboard):
        # Without its logs, Tune's end-of-run analysis warns once per trial that it found none;
        # the Parquet tables are the record.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        lock = SweepLock(plan.experiment_dir, plan.options.name)
    except OSError as err:  # e.g. an --out under /proc, a read-only mount: nothing was written
        where = plan.options.state_dir if is_uri(plan.options.out) else plan.options.out
        raise PaituneError(f"--out {where}: cannot create {plan.experiment_dir}: {err.strerror or err}") from None
    try:
        # A driver of this sweep that was SIGKILLed may have left Ray helpers running.
        reap_orphans(plan.experiment_dir)
        try:
            started = start_ray(plan.options.address, plan.experiment_dir)
            if stops is not None:
                stops.install()
        except PaituneError:
            lock.release()
            if created:
                shutil.rmtree(plan.experiment_dir, ignore_errors=True)
            raise
        try:
            if plan.options.resume:
                fetch_state(plan)
            else:
                _write_manifest(plan)
                mirror_state(plan)
            from paitune.search.sink import flush_for_snapshot, flush_writes, reset_write_failure

            reset_write_failure()
            tuner, _ = build_tuner(plan)
            if stops is not None and stops.requested:
                return None
            try:
                with serialized_snapshots(before_save=flush_for_snapshot):
                    grid = tuner.fit()
            finally:
                flush_writes()  # the rows of every trial that ended, also when fit raised
            if stops is None or not stops.requested:  # a stopped sweep's running trials are Tune's to resume
                _close_study(plan)
            return grid
        finally:
            mirror_state(plan)
            if started:
                import ray

                ray.shutdown()
                forget_processes(plan.experiment_dir)
    finally:
        lock.release()


def run_sweep(plan: SweepPlan, *, stream=None) -> int:
    """Run the planned sweep and print its summary; returns the exit status (1: no trial
    succeeded; 130 / 143: stopped by SIGINT / SIGTERM, resumable)."""
    from paitune.search.interrupt import StopRequests
    from paitune.search.sink import disk_failure, write_failure
    from paitune.search.summary import print_stopped, print_summary

    stops = StopRequests()
    with stops.catching():
        try:
            grid = execute_sweep(plan, stops)
        except KeyboardInterrupt:  # a second signal (or Ctrl-C with no handler in place yet)
            stops.signal = stops.signal or signal.SIGINT
            grid = None
        except Exception as err:  # a full or read-only disk under Tune's own writes (its state, Optuna's)
            disk = write_failure() or disk_failure(err, plan.results)
            if disk is None:
                raise
            stops.request(disk)
        if write_failure() is not None:
            stops.request(write_failure())
        if stops.requested:
            return print_stopped(plan, stops)
    return print_summary(plan.results, grid, stream=stream or sys.stdout)
