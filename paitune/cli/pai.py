"""``paitune prune`` and ``paitune proxies``: the PaI library from the shell, no Ray involved.

paitune prune --model vgg16 --dataset synthetic --method synflow --sparsity 0.999 --allocation global
paitune prune --model cnn --method prospr --method-option inner_steps=1 --method-option meta_grads=first_order
paitune proxies --model cnn --method snip --sparsity 0.9 --json
paitune proxies --model cnn --names naswot,swap_reg --swap-mu 60 --swap-sigma 40
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..errors import PaituneError


def _add_trial_arguments(p) -> None:
    p.add_argument("--model", default="mlp", help="model name (see paitune.models.MODELS)")
    p.add_argument("--dataset", default="digits", help="digits (embedded), synthetic, mnist, cifar10, ...")
    p.add_argument("--data-root", default=None, help="directory holding torchvision datasets")
    p.add_argument("--synthetic-shape", default="3,32,32", help="input shape of the synthetic dataset, e.g. 3,32,32")
    p.add_argument(
        "--method",
        default="random",
        help="random, magnitude, snip, grasp, synflow, iterative_snip, force, prospr, ntk_sap, phew, px",
    )
    p.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the method, repeatable: prospr inner_steps, inner_lr, inner_momentum, meta_grads; "
        "ntk_sap epsilon, resamples",
    )
    p.add_argument("--sparsity", type=float, default=0.9, help="fraction of prunable weights removed, in [0, 1)")
    p.add_argument(
        "--allocation",
        default="global",
        help="global, lamp, uniform, uniform_plus, er, erk, igq, smart_ratio, or a JSON file {layer: density}",
    )
    p.add_argument("--control", default="none", help="none, shuffle, reinit, invert")
    p.add_argument("--iterations", type=int, default=None, help="pruning rounds (default: 100 for iterative methods)")
    p.add_argument("--schedule", default="exponential", help="exponential or linear (iterative methods)")
    p.add_argument("--prune-batches", type=int, default=1)
    p.add_argument("--prune-batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prune", help="prune a freshly initialized model and show per-layer densities and collapse"
    )
    _add_trial_arguments(p)
    p.set_defaults(func=run_prune)
    q = subparsers.add_parser("proxies", help="zero-cost proxies of a (pruned) model at init")
    _add_trial_arguments(q)
    q.add_argument("--names", default=None, help="comma-separated proxies (default: all)")
    q.add_argument(
        "--swap-mu", type=float, default=None, help="swap_reg: the regularizer's center, in thousands of parameters"
    )
    q.add_argument("--swap-sigma", type=float, default=None, help="swap_reg: the regularizer's width")
    q.set_defaults(func=run_proxies, sparsity=0.0)


def _allocation(value: str):
    if value.endswith(".json"):
        path = Path(value)
        if not path.is_file():
            raise PaituneError(
                f"allocation file {value} not found; pass a scheme name or a JSON file {{layer: density}}"
            )
        try:
            densities = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PaituneError(f"allocation file {value} is not valid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(densities, dict):
            raise PaituneError(f"allocation file {value} must hold a JSON object {{layer: density}}")
        return densities
    return value


def _shape(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise PaituneError(f"--synthetic-shape must be comma-separated integers like 3,32,32, got {text!r}") from None


def _method_options(args) -> dict:
    """--method-option KEY=VALUE pairs, checked against the method's options (one line on error)."""
    from ..pruning.registry import get_method

    options = {}
    for text in args.method_option:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise PaituneError(f"--method-option takes KEY=VALUE, got {text!r}")
        options[key.strip()] = value.strip()
    if args.method in _pai_methods():
        get_method(args.method).resolve_options(options)  # unknown keys and bad values: one line
    elif options:
        raise PaituneError(f"method {args.method!r} takes no --method-option")
    return options


def _pai_methods() -> tuple[str, ...]:
    from ..pruning import METHODS

    return METHODS


def _trial_config(args) -> dict:
    return {
        "dataset": args.dataset,
        "data_root": args.data_root,
        "synthetic_shape": _shape(args.synthetic_shape),
        "model": args.model,
        "method": args.method,
        "sparsity": args.sparsity,
        "allocation": _allocation(args.allocation),
        "control": args.control,
        "iterations": args.iterations,
        "schedule": args.schedule,
        "prune_batches": args.prune_batches,
        "prune_batch_size": args.prune_batch_size,
        "seed": args.seed,
    }


def _prepare(args, proxies: list[str]):
    # Imported here so `paitune --help` stays fast.
    from ..pruning.allocation import check_sparsity
    from ..search.pipeline import prepare_trial, resolve_config

    config = {**_trial_config(args), "proxies": proxies}
    check_sparsity(config["sparsity"])
    # Each option becomes its trial key (prospr_inner_steps, ...), so the config records it.
    config.update({f"{args.method}_{key}": value for key, value in _method_options(args).items()})
    config.update(swap_mu=getattr(args, "swap_mu", None), swap_sigma=getattr(args, "swap_sigma", None))
    resolve_config(config)  # every name checked before any data is loaded
    return prepare_trial(config)


def run_prune(args) -> int:
    trial = _prepare(args, [])
    report = trial.report
    if args.json:
        out = report.to_dict()
        out.update(mask_hash=trial.mask_hash, prune_seconds=trial.prune_seconds, config=trial.config)
        out["method_options"] = trial.masks.meta.get("method_options", {})
        json.dump(out, sys.stdout, indent=2, default=str)
        print()
        return 0
    cfg = trial.config
    print(
        f"{cfg['model']} on {cfg['dataset']}: {cfg['method']} at sparsity {cfg['sparsity']:g}, "
        f"allocation {cfg['allocation'] if isinstance(cfg['allocation'], str) else 'explicit'}, control {cfg['control']}"
    )
    width = max(len(layer.name) for layer in report.layers)
    print(f"{'layer':<{width}}  {'shape':>16}  {'numel':>10}  {'kept':>10}  {'density':>9}")
    for layer in report.layers:
        shape = "x".join(str(d) for d in layer.shape)
        flag = "  EMPTY" if layer.kept == 0 else ""
        print(f"{layer.name:<{width}}  {shape:>16}  {layer.numel:>10}  {layer.kept:>10}  {layer.density:>9.5f}{flag}")
    print(
        f"density {report.density:.6f} ({report.params_kept}/{report.params_total} weights kept); "
        f"FLOPs {report.flops_sparse:,} of {report.flops_dense:,} dense; prune {trial.prune_seconds:.2f}s"
    )
    if report.collapsed:
        why = f"{len(report.collapsed_layers)} empty layer(s)" if report.collapsed_layers else "no input-output path"
        print(
            f"LAYER COLLAPSE: {why}{'; no input-output path' if report.collapsed_layers and report.disconnected else ''}"
        )
    else:
        print("no layer collapse")
    return 0


def run_proxies(args) -> int:
    from ..proxies import PROXIES

    if args.names:
        names = [n.strip() for n in args.names.split(",") if n.strip()]
    else:  # all; swap_reg only with its settings
        given = args.swap_mu is not None and args.swap_sigma is not None
        names = [n for n in PROXIES if n != "swap_reg" or given]
    trial = _prepare(args, names)
    values = {name: (v if math.isfinite(v) else None) for name, v in trial.proxies.items()}
    if args.json:
        json.dump({"proxies": values, "config": trial.config}, sys.stdout, indent=2, default=str)
        print()
        return 0
    cfg = trial.config
    print(f"{cfg['model']} on {cfg['dataset']}: {cfg['method']} at sparsity {cfg['sparsity']:g}")
    for name, value in values.items():
        print(f"  {name:<10} {'nan' if value is None else f'{value:.6g}'}")
    return 0
