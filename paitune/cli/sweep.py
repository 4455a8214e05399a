"""``paitune sweep``: run a search space on Ray Tune + Optuna + ASHA, results in Parquet."""

from __future__ import annotations

import argparse
import sys

from paitune.config.sweep import SweepOptions, option_fields


def _add_option(parser: argparse.ArgumentParser, f) -> None:
    meta = f.metadata
    if f.name == "space":
        parser.add_argument("space", nargs="?", default=None, help=meta["help"])
        return
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    kwargs = {"dest": f.name, "help": meta["help"]}
    if f.type == "bool":
        parser.add_argument(flag, action="store_true", **kwargs)
        return
    if f.name == "sets":
        parser.add_argument(flag, action="append", default=[], metavar=meta["metavar"], **kwargs)
        return
    default = f.default
    number = {"int": int, "int | None": int, "float": float}.get(f.type)
    if default is not None:
        kwargs["help"] += f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"
    parser.add_argument(flag, type=number, default=default, metavar=meta["metavar"], **kwargs)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sweep",
        help="run a search space (Ray Tune + Optuna + ASHA), results in Parquet under OUT/NAME",
        description="Run a search space: Optuna samples trial configs, ASHA stops weak trials, every "
        "trial lands in OUT/NAME/{trials,epochs,layers} as Parquet. Everything is validated before Ray starts.",
    )
    for f in option_fields():
        _add_option(parser, f)
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
    from paitune.search.plan import plan_sweep
    from paitune.search.sweep import run_sweep

    values = {f.name: getattr(args, f.name) for f in option_fields()}
    options = SweepOptions(**values, verbose=0 if args.quiet else 2 if args.verbose else 1)
    plan = plan_sweep(options)  # raises PaituneError before anything starts
    if not options.resume:
        from paitune.spaces.feasibility import unbuildable

        for line in unbuildable(plan.space):
            print(f"paitune sweep: note: {line}", file=sys.stderr)
    return run_sweep(plan)
