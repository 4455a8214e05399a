"""``paitune sweep``: run a search space on Ray Tune + Optuna + ASHA, results in Parquet."""

from __future__ import annotations

import argparse

SAMPLER_CHOICES = ("tpe", "random", "grid", "cmaes", "nsga2", "gp")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sweep",
        help="run a search space (Ray Tune + Optuna + ASHA), results in Parquet under OUT/NAME",
        description="Run a search space: Optuna samples trial configs, ASHA stops weak trials, every "
        "trial lands in OUT/NAME/{trials,epochs,layers} as Parquet. Everything is validated before Ray starts.",
    )
    parser.add_argument(
        "space", nargs="?", default=None, help="preset name (see `paitune spaces list`) or YAML file; default: default"
    )
    parser.add_argument(
        "--out",
        default="results",
        help="results directory, local or a pyarrow URI such as s3://bucket/results (default: results)",
    )
    parser.add_argument("--name", default="sweep", help="experiment name: results go to OUT/NAME (default: sweep)")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="trials to run (configs x seeds); default: the space's num_samples",
    )
    parser.add_argument("--sampler", default="tpe", help=f"Optuna sampler: {', '.join(SAMPLER_CHOICES)} (default: tpe)")
    parser.add_argument("--scheduler", default=None, help="asha or fifo (default: the space's)")
    parser.add_argument(
        "--address", default=None, help="join an existing Ray cluster (e.g. auto) instead of starting one"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep OUT/NAME after a crash or interruption"
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="trials running at once (default: CPUs / cpus-per-trial)"
    )
    parser.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, fractions allowed (default: 0)"
    )
    parser.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs per trial; also torch's thread count (default: 1)"
    )
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override the space: a trial setting (epochs=2, method=snip) or a dotted path (scheduler.grace_period=2); repeatable")  # fmt: skip
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of the Optuna sampler (default: 0)")
    parser.add_argument(
        "--max-failures", type=int, default=2, help="retries of a failed trial from its last checkpoint (default: 2)"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="where Tune keeps checkpoints and state: a path or a pyarrow URI such as s3://bucket/dir (default: --out)",
    )
    parser.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every_s",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="checkpoint a trial when this long has passed since it began or last checkpointed (a shorter trial reruns "
        "from its start after a crash); "
        "0: every epoch (default: 5)",
    )
    parser.add_argument(
        "--report-every",
        dest="report_every_s",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="a trial reports to Tune at the scheduler's decision points (ASHA's rungs), at its end, with "
        "each checkpoint, and when this long has passed since its last report; every epoch still "
        "reaches the tables. 0: every epoch (default: 1)",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="with a URI --out: local folder for paitune's live state (default: ~/.cache/paitune/sweeps/<hash of --out>)",
    )
    parser.add_argument(
        "--tune-logs",
        action="store_true",
        help="also write Tune's per-trial result.json and progress.csv (off by default: the Parquet tables "
        "are the record, and Tune re-uploads those logs at every experiment snapshot)",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write Tune's TensorBoard event files per trial (off by default: the Parquet tables are the record)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="no progress lines while it runs")
    output.add_argument(
        "--verbose",
        action="store_true",
        help="Tune's progress table, a row per trial, instead of paitune's few lines (done / running / failed, "
        "best so far per context, ETA)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from paitune.search.sweep import SweepOptions, plan_sweep, run_sweep

    options = SweepOptions(
        space=args.space,
        out=args.out,
        name=args.name,
        num_samples=args.num_samples,
        sampler=args.sampler,
        scheduler=args.scheduler,
        address=args.address,
        resume=args.resume,
        max_concurrent=args.max_concurrent,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        sets=list(args.sets),
        sampler_seed=args.sampler_seed,
        max_failures=args.max_failures,
        storage=args.storage,
        tensorboard=args.tensorboard,
        tune_logs=args.tune_logs,
        state_dir=args.state_dir,
        checkpoint_every_s=args.checkpoint_every_s,
        report_every_s=args.report_every_s,
        verbose=0 if args.quiet else 2 if args.verbose else 1,
    )
    plan = plan_sweep(options)  # raises PaituneError before anything starts
    return run_sweep(plan)
