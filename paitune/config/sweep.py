"""The options of a sweep (``paitune sweep``'s flags), declared once with their help.

``paitune.cli.sweep`` builds its flags from these fields; ``paitune.search.plan`` plans the sweep
from the same object, so a default lives in one place. Importing this module imports no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsga2", "gp")
SCHEDULERS = ("asha", "fifo")


def _opt(default, help: str, *, flag: str | None = None, metavar: str | None = None, cli: bool = True):
    meta = {"help": help, "flag": flag, "metavar": metavar, "cli": cli}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SweepOptions:
    """How to run a sweep: which space, where results go, the search and the resources."""

    space: str | None = _opt(
        None, "preset name (see `paitune spaces list`) or YAML file; default: default (or the resumed sweep's)"
    )
    out: str = _opt("results", "results directory, local or a pyarrow URI such as s3://bucket/results")
    name: str = _opt("sweep", "experiment name: results go to OUT/NAME")
    num_samples: int | None = _opt(
        None, "sampled trials per sweep (each adds its control arms); default: the space's num_samples"
    )
    sampler: str = _opt("tpe", f"Optuna sampler: {', '.join(SAMPLERS)}")
    scheduler: str | None = _opt(None, f"{' or '.join(SCHEDULERS)}; default: the space's")
    address: str | None = _opt(None, "join an existing Ray cluster (e.g. auto) instead of starting one")
    resume: bool = _opt(False, "continue the sweep OUT/NAME after a crash or interruption")
    max_concurrent: int | None = _opt(None, "trials running at once; default: CPUs / cpus-per-trial")
    gpus_per_trial: float = _opt(0.0, "GPUs per trial, fractions allowed")
    cpus_per_trial: float = _opt(1.0, "CPUs per trial; also torch's thread count")
    sets: list[str] = _opt(
        [],
        "override the space: a trial setting (epochs=2, method=snip) or a dotted path "
        "(scheduler.grace_period=2); repeatable",
        flag="--set",
        metavar="KEY=VALUE",
    )
    sampler_seed: int | None = _opt(0, "seed of the Optuna sampler")
    max_failures: int = _opt(2, "retries of a failed trial from its last checkpoint")
    storage: str | None = _opt(
        None, "where Tune keeps checkpoints and state: a path or a pyarrow URI such as s3://bucket/dir; default: --out"
    )
    tensorboard: bool = _opt(
        False, "also write Tune's TensorBoard event files per trial (the Parquet tables are the record)"
    )
    tune_logs: bool = _opt(
        False,
        "also write Tune's per-trial result.json and progress.csv (the Parquet tables are the record, and Tune "
        "re-uploads those logs at every experiment snapshot)",
    )
    checkpoint_every_s: float = _opt(
        5.0,
        "checkpoint a trial when this long has passed since it began or last checkpointed (a shorter trial reruns "
        "from its start after a crash); 0: every epoch",
        flag="--checkpoint-every",
        metavar="SECONDS",
    )
    report_every_s: float = _opt(
        1.0,
        "a trial reports to Tune at the scheduler's decision points (ASHA's rungs), at its end, with each "
        "checkpoint, and when this long has passed since its last report; every epoch still reaches the tables. "
        "0: every epoch",
        flag="--report-every",
        metavar="SECONDS",
    )
    state_dir: str | None = _opt(
        None,
        "with a URI --out: local folder for paitune's live state; default: ~/.cache/paitune/sweeps/<hash of --out>",
    )
    compact_min: int = _opt(
        1000,
        "at the sweep's end, merge the per-trial result files into a few large ones (`paitune compact`) once "
        "there are this many trials in them; 0: never",
        metavar="TRIALS",
    )
    # 0: quiet, 1: paitune's compact progress, 2: Tune's table of every trial (--quiet / --verbose).
    verbose: int = _opt(1, "how much progress to print", cli=False)


def option_fields():
    """The fields of ``SweepOptions`` that are plain flags."""
    return [f for f in fields(SweepOptions) if f.metadata.get("cli", True)]
