"""``paitune prune`` and ``paitune proxies``: the PaI library from the shell, no Ray involved.

paitune prune --model vgg16 --dataset synthetic --method synflow --sparsity 0.999 --allocation global
paitune proxies --model cnn --method snip --sparsity 0.9 --json
"""

from __future__ import annotations

import json
import math
import sys

from ..config import TRIAL_DEFAULTS, allocation_label, method_key
from ..config.cli import OptionHelpFormatter, add_option_arguments, parse_text, trial_options, values_from_args
from ..errors import PaituneError

# The trial options a prune or proxy run takes; training, proxies and the sparse methods' own
# options have no effect before training.
_COMPONENTS = ("data", "model", "pruning", "run")


def _add_trial_arguments(p) -> None:
    add_option_arguments(p, trial_options(*_COMPONENTS))
    action = p.add_argument(
        "--method-option", action="append", default=[], metavar="KEY=VALUE", help="a setting of the method"
    )
    action.lazy_help = _method_option_help
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _method_option_help() -> str:
    from ..pruning.registry import registered

    settings = "; ".join(f"{spec.name} {', '.join(spec.options)}" for spec in registered() if spec.options)
    return f"a setting of the method, repeatable: {settings} (docs/methods.md)"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="prune a freshly initialized model and show per-layer densities and collapse",
        formatter_class=OptionHelpFormatter,
    )
    _add_trial_arguments(p)
    p.set_defaults(func=run_prune)
    q = subparsers.add_parser(
        "proxies", help="zero-cost proxies of a (pruned) model at init", formatter_class=OptionHelpFormatter
    )
    _add_trial_arguments(q)
    q.add_argument(
        "--names",
        default=None,
        help="comma-separated proxies (default: all; swap_reg only with --swap-mu and --swap-sigma)",
    )
    add_option_arguments(q, _PROXY_SETTINGS)
    q.set_defaults(func=run_proxies, sparsity="0")  # proxies of the dense model unless --sparsity is given


# The proxies' own settings (swap_reg's swap_mu, swap_sigma); the proxy list is --names.
_PROXY_SETTINGS = [o for o in trial_options("proxies") if o.name != "proxies"]


def _method_options(args) -> dict:
    """--method-option KEY=VALUE items as the method's trial keys (prospr_inner_steps, ...)."""
    from ..pruning.registry import registered

    texts = {}
    for text in args.method_option:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise PaituneError(f"--method-option takes KEY=VALUE, got {text!r}")
        texts[key.strip()] = value.strip()
    if not texts:
        return {}
    method = args.method or TRIAL_DEFAULTS["method"]
    spec = {s.name: s for s in registered()}.get(method)
    if spec is None:
        raise PaituneError(f"method {method!r} takes no --method-option")
    spec.check_option_names(texts)  # unknown keys: one line naming the method's options
    values = {
        key: parse_text(spec.options[key], text, where=f"--method-option {key}={text}") for key, text in texts.items()
    }
    resolved = spec.resolve_options(values)  # bad values: one line
    # Each option becomes its trial key, so the config records it.
    return {method_key(method, key): resolved[key] for key in values}


def _trial_config(args) -> dict:
    values = values_from_args(args, trial_options(*_COMPONENTS))
    values.update(values_from_args(args, _PROXY_SETTINGS) if hasattr(args, "names") else {})
    return {**values, **_method_options(args)}


def _prepare(args, proxies: list[str]):
    # Imported here so `paitune --help` stays fast.
    from ..pruning.allocation import check_sparsity
    from ..trial import prepare_trial, resolve_config

    config = {**_trial_config(args), "proxies": proxies}
    check_sparsity(config.get("sparsity", TRIAL_DEFAULTS["sparsity"]))
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
        f"allocation {allocation_label(cfg['allocation'])}, control {cfg['control']}"
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
    from ..proxies import runnable_proxy_names

    # "All" is every proxy the given settings let run: swap_reg only with --swap-mu and --swap-sigma.
    settings = values_from_args(args, _PROXY_SETTINGS)
    names = (
        runnable_proxy_names(settings) if not args.names else [n.strip() for n in args.names.split(",") if n.strip()]
    )
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
