"""Planning a sweep: ``plan_sweep(options)`` checks the space, the arguments and the output
directory without starting or writing anything, and returns the ``SweepPlan`` the rest of the
sweep runs from; bad input raises ``PaituneError`` (one line, naming the fix).

A ``--resume`` plan is read back from the sweep's manifest (``paitune.search.state_files``): the
space and options as they were planned, not as the file or preset reads today.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from paitune.config import TRIAL_DEFAULTS
from paitune.config.sweep import SCHEDULERS, SweepOptions
from paitune.errors import PaituneError, unknown_choice
from paitune.plugins import load_plugins
from paitune.results.storage import Location, is_uri, locate
from paitune.search.internals import check_versions
from paitune.search.lock import lock_holder, refusal
from paitune.search.samplers import SAMPLERS, SINGLE_OBJECTIVE_SAMPLERS
from paitune.search.state_files import MANIFEST, default_state_dir, read_manifest
from paitune.spaces import CompiledSpace, Space, compile_space, load_space
from paitune.spaces.check import possible_setting_values
from paitune.spaces.compile import SLOPE_PARAM, layer_param, model_layer_shapes
from paitune.spaces.loader import build_space
from paitune.spaces.schema import PerLayerAllocation

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# Each context's Optuna sampler is seeded apart from the others': seed + SAMPLER_SEED_STRIDE x its
# index, which numpy's generators take below SAMPLER_SEED_LIMIT.
SAMPLER_SEED_STRIDE = 1000
SAMPLER_SEED_LIMIT = 2**32
# What a resumed sweep takes from the command line; everything else is as it was planned.
RESUME_FLAGS = frozenset({"out", "name", "resume", "address", "verbose", "state_dir"})


def _check_sampler_seed(seed: int | None, n_contexts: int) -> None:
    if seed is None:
        return
    highest = SAMPLER_SEED_LIMIT - 1 - SAMPLER_SEED_STRIDE * max(0, n_contexts - 1)  # the last context's seed fits
    if not 0 <= seed <= highest:
        raise PaituneError(
            f"--sampler-seed must be in [0, {highest}] "
            f"for {n_contexts} contexts (each seeds its sampler {SAMPLER_SEED_STRIDE} apart), got {seed}"
        )


def _planned_elsewhere(options: SweepOptions) -> list[str]:
    """The flags given with --resume that the saved plan decides (those not at their default)."""
    defaults = SweepOptions()
    given = []
    for f in fields(SweepOptions):
        if f.name in RESUME_FLAGS or f.name in ("space", "sets"):
            continue
        if getattr(options, f.name) != getattr(defaults, f.name):
            given.append(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))
    return given


def _saved_options(manifest: dict, experiment_dir: Path) -> SweepOptions:
    try:
        manifest["space"]
        return SweepOptions(**manifest["options"])
    except (KeyError, TypeError) as err:
        raise PaituneError(
            f"--resume: {experiment_dir / MANIFEST} is not a sweep plan paitune wrote ({type(err).__name__}: {err})"
        ) from None


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
    from paitune.data.vision import VISION_DATASETS, import_torchvision_datasets, resolve_data_root

    datasets = possible_setting_values(space, "dataset")
    root = resolve_data_root(space.settings.get("data_root"))
    for name in sorted(d for d in datasets if d in VISION_DATASETS):
        spec = VISION_DATASETS[name]
        missing = [f for f in spec.files if not (root / spec.folder / f).exists()]
        if missing:
            raise PaituneError(
                f"dataset {name}: {root / spec.folder / missing[0]} not found; set data_root to the folder holding {spec.folder} (--set data_root=PATH)"
            )
    if any(d in VISION_DATASETS for d in datasets):
        import_torchvision_datasets()  # every trial would fail without it: one line now


def _search_params(space: Space) -> list[str]:
    """Raw Optuna parameters that are not trial config keys (the searched allocation's)."""
    family = space.allocation_search
    if family is None:
        return []
    if not isinstance(family, PerLayerAllocation):
        return [SLOPE_PARAM]
    models = possible_setting_values(space, "model")
    dataset = space.settings.get("dataset", TRIAL_DEFAULTS["dataset"])
    shape = tuple(space.settings.get("synthetic_shape", TRIAL_DEFAULTS["synthetic_shape"]))
    classes = int(space.settings.get("synthetic_classes", TRIAL_DEFAULTS["synthetic_classes"]))
    most = max(len(model_layer_shapes(m, dataset, shape, classes)) for m in models)
    return [layer_param(i) for i in range(most)]


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
        manifest = read_manifest(experiment_dir if (experiment_dir / MANIFEST).exists() else remote)
        if options.space or options.sets:
            raise PaituneError("--resume continues the sweep as it was planned; drop SPACE and --set")
        planned = _planned_elsewhere(options)
        if planned:
            raise PaituneError(f"--resume continues the sweep as it was planned; drop {', '.join(planned)}")
        saved = _saved_options(manifest, experiment_dir)
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
    if scheduler == "asha" and "imp" in possible_setting_values(space, "method"):
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
    elif num_samples % len(compiled.seeds):
        # Every sampled config runs once per seed: a remainder would leave one config without
        # some of its replicates (and the seed it kept would be the one the sampler drew).
        k = len(compiled.seeds)
        named = "--num-samples" if options.num_samples is not None else "the space's num_samples"
        lower, upper = num_samples - num_samples % k, num_samples - num_samples % k + k
        raise PaituneError(
            f"{named} {num_samples} is not a multiple of the {k} seeds (every sampled config runs once per seed): "
            f"use {' or '.join(str(n) for n in (lower, upper) if n > 0)}"
        )
    if not (options.cpus_per_trial > 0 and math.isfinite(options.cpus_per_trial)):
        raise PaituneError(f"--cpus-per-trial must be a finite number > 0, got {options.cpus_per_trial}")
    if not (options.gpus_per_trial >= 0 and math.isfinite(options.gpus_per_trial)):
        raise PaituneError(f"--gpus-per-trial must be a finite number >= 0, got {options.gpus_per_trial}")
    _check_sampler_seed(options.sampler_seed, len(compiled.contexts()))
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
    if options.compact_min < 0:
        raise PaituneError(f"--compact-min must be >= 0 trials, got {options.compact_min}")
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
        from paitune.spaces.feasibility import check_buildable

        check_combinations(compiled)
        check_buildable(space)
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
