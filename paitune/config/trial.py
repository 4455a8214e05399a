"""The trial config: every option one trial runs with, declared once per component.

A trial config is a flat dict of resolved values (``resolve_config``): every option below, in this
order, filled with its default where a space or caller says nothing, typed and checked. Two configs
that run the same experiment therefore hash the same (``config_hash``).

The components are the parts of a trial: the data, the model, the pruning at init, the seed, the
training, the zero-cost proxies scored at init and the sparse-training methods' own options.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from paitune.config.options import Option, Range, check_value, coerce
from paitune.errors import PaituneError

_PRUNING = "paitune.pruning"
_SPARSE = "paitune.sparse.config"
_DST = ("set", "rigl")

DATA = (
    Option("dataset", "name", "digits", "dataset: digits is embedded; synthetic needs no files; the others "
           "load through torchvision from data_root", "data", choices="paitune.data:dataset_names"),
    Option("data_root", "path", None, "directory holding torchvision datasets (never downloaded at run time)",
           "data", nullable=True, not_searchable="data_root is a path; set it under settings"),
    Option("synthetic_shape", "shape", [3, 32, 32], "input shape of the synthetic dataset", "data",
           not_searchable="synthetic_shape is a list of sizes; set it under settings"),
    Option("synthetic_classes", "int", 10, "classes of the synthetic dataset", "data", range=Range(2)),
)  # fmt: skip
MODEL = (Option("model", "name", "mlp", "network architecture", "model", choices="paitune.models:model_names"),)
PRUNING = (
    Option("method", "name", "random", "pruning method: a PaI method, dense, or a sparse-training method",
           "pruning", choices=f"{_SPARSE}:trial_methods", what="pruning method"),
    Option("sparsity", "float", 0.9, "fraction of the prunable weights removed", "pruning",
           range=Range(0.0, 1.0, high_open=True, note="(the fraction of weights removed)")),
    Option("allocation", "allocation", "global", "layerwise allocation: a scheme name, or {layer: density}",
           "pruning", choices=f"{_PRUNING}:allocation_names"),
    Option("control", "name", "none", "sanity-check control applied to the mask (none, or a PaI survey control)",
           "pruning", choices=f"{_PRUNING}:control_names"),
    Option("iterations", "int", None, "pruning rounds of iterative methods (unset: the method's default)",
           "pruning", range=Range(1), nullable=True),
    Option("schedule", "name", "exponential", "density schedule of iterative methods' rounds", "pruning",
           choices=f"{_PRUNING}:SCHEDULES"),
    Option("prune_batches", "int", 1, "training batches the data-dependent methods score on", "pruning",
           range=Range(1)),
    Option("prune_batch_size", "int", 256, "size of each scoring batch", "pruning", range=Range(1)),
)  # fmt: skip
SEED_LIMIT = 2**32  # seeds are 32-bit, as NumPy's and most seeding APIs take them
RUN = (
    Option("seed", "int", 0, "seeds the data order, the initialization, the pruning and the training", "run",
           range=Range(0, SEED_LIMIT, high_open=True), not_searchable="seeds are a replicate axis; list them under seeds:"),
)  # fmt: skip
TRAINING = (
    Option("epochs", "int", 10, "training epochs: the budget (ASHA's max_t)", "training", range=Range(1),
           not_searchable="epochs is the training budget (ASHA's max_t); set it under settings"),
    Option("batch_size", "int", 128, "training batch size", "training", range=Range(1)),
    Option("optimizer", "name", "sgd", "optimizer", "training", choices="paitune.training:OPTIMIZERS"),
    Option("lr", "float", 0.05, "learning rate", "training", range=Range(0.0, low_open=True)),
    Option("momentum", "float", 0.9, "SGD momentum", "training", range=Range(0.0, 1.0, high_open=True)),
    Option("nesterov", "bool", False, "sgd: Nesterov momentum (needs momentum > 0)", "training",
           hashed_at_default=False),
    Option("weight_decay", "float", 5e-4, "L2 weight decay", "training", range=Range(0.0)),
    Option("lr_schedule", "name", "cosine", "learning-rate schedule over the epochs", "training",
           choices="paitune.training:LR_SCHEDULES"),
    Option("step_size", "int", None, "step schedule: epochs between decays (unset: a third of the run)",
           "training", range=Range(1), nullable=True, hashed_at_default=False),
    Option("gamma", "float", 0.1, "step and multistep schedules: the factor each decay multiplies the rate by",
           "training", range=Range(0.0, 1.0, low_open=True), hashed_at_default=False),
    Option("lr_milestones", "floats", [0.5, 0.75], "multistep schedule: the fractions of the run after which the "
           "rate is multiplied by gamma (each at epoch int(fraction x epochs), at least 1; "
           "distinct, and before the last epoch)", "training", range=Range(0.0, 1.0, low_open=True, high_open=True),
           not_searchable="lr_milestones is a list of fractions; set it under settings", hashed_at_default=False),
    Option("augment", "name", "none", "data augmentation on the device: standard = random crop from the image padded "
           "with 4 black pixels + horizontal flip for 32x32 images (nothing for smaller or flat inputs)", "training",
           choices="paitune.training:AUGMENTS", hashed_at_default=False),
    Option("precision", "name", "fp32", "autocast dtype of the forward passes (weights stay fp32; fp16 adds a "
           "loss scaler)", "training", choices="paitune.training:PRECISIONS", hashed_at_default=False),
    Option("channels_last", "bool", False, "channels-last memory layout for the model and the images", "training",
           hashed_at_default=False),
    Option("compile", "bool", False, "torch.compile the forward pass (once per worker and architecture)",
           "training", hashed_at_default=False),
    Option("eval_every", "int", 1, "epochs between val/test passes (ASHA's rungs and the last epoch are always "
           "measured)", "training", range=Range(1), hashed_at_default=False),
)  # fmt: skip
PROXIES = (
    Option("proxies", "names", [], "zero-cost proxies scored at init, after pruning", "proxies", what="proxy",
           choices="paitune.proxies:proxy_names", not_searchable="proxies is a list of proxy names; set it under settings"),
    Option("swap_mu", "float", None, "swap_reg: the regularizer's center, in thousands of parameters", "proxies",
           nullable=True, hashed_at_default=False),
    Option("swap_sigma", "float", None, "swap_reg: the regularizer's width, in thousands of parameters", "proxies",
           range=Range(0.0, low_open=True), nullable=True, hashed_at_default=False),
)  # fmt: skip
# The PaI methods' own options, one trial key each: <method>_<option>. The method's registration
# declares each option's default, rule and help (``paitune.pruning`` ``method_option``); the key
# says how a config stores it. Unset means the method's default. A trial records its own method's
# (or, for set/rigl, its starting mask's method's) values and None for the others.


def method_key(method: str, option: str) -> str:
    """The trial key of a PaI method's own option."""
    return f"{method}_{option}"


def _method_key(method: str, option: str, kind: str) -> Option:
    # Not hashed while unset, so a config without the key keeps its hash.
    return Option(method_key(method, option), kind, None, "", "method_options", nullable=True,
                  method_option=f"{method}:{option}", hashed_at_default=False)  # fmt: skip


METHOD_OPTIONS = (
    # The built-ins' keys are declared here, so that a config reads the same whether or not
    # paitune.pruning has been imported yet; a plug-in's are added when it registers.
    _method_key("prospr", "inner_steps", "int"),
    _method_key("prospr", "inner_lr", "float"),
    _method_key("prospr", "inner_momentum", "float"),
    _method_key("prospr", "meta_grads", "name"),
    _method_key("ntk_sap", "epsilon", "float"),
    _method_key("ntk_sap", "resamples", "int"),
)
SPARSE = (
    Option("init_method", "name", "random", "set/rigl: the static PaI method of the starting mask", "sparse",
           choices=f"{_SPARSE}:init_methods", used_by=_DST, what="init_method (the starting mask of set/rigl)"),
    Option("update_interval", "int", 100, "set/rigl: optimizer steps between mask updates", "sparse",
           range=Range(1, note="optimizer step"), used_by=_DST),
    Option("drop_fraction", "float", 0.3, "set/rigl: fraction of each layer's active weights moved per update, "
           "at step 0", "sparse", range=Range(0.0, 1.0), used_by=_DST),
    Option("drop_schedule", "name", "cosine", "set/rigl: how the drop fraction decays to 0", "sparse",
           choices=f"{_SPARSE}:DROP_SCHEDULES", used_by=_DST),
    Option("drop_until", "float", 0.75, "set/rigl: fraction of all training steps after which the mask is frozen",
           "sparse", range=Range(0.0, 1.0, low_open=True), used_by=_DST),
    Option("imp_prune_fraction", "float", 0.2, "imp: fraction of the remaining weights removed per round",
           "sparse", range=Range(0.0, 1.0, low_open=True, high_open=True), used_by=("imp",)),
    Option("rewind_epoch", "int", 0, "imp: epoch of the dense run every round rewinds to (0 = init)", "sparse",
           range=Range(0, note="(and below epochs)"), used_by=("imp",)),
    Option("popup_weight_init", "name", "signed_constant", "edge_popup: frozen weights, +-sqrt(2/fan_in) or the "
           "model's init", "sparse", choices=f"{_SPARSE}:POPUP_WEIGHT_INITS", used_by=("edge_popup",)),
)  # fmt: skip

COMPONENTS: dict[str, tuple[Option, ...]] = {
    "data": DATA,
    "model": MODEL,
    "pruning": PRUNING,
    "run": RUN,
    "training": TRAINING,
    "proxies": PROXIES,
    "sparse": SPARSE,
    "method_options": METHOD_OPTIONS,
}
TRIAL_OPTIONS: dict[str, Option] = {o.name: o for options in COMPONENTS.values() for o in options}
TRIAL_DEFAULTS: dict[str, Any] = {name: o.default for name, o in TRIAL_OPTIONS.items()}
NOT_SEARCHABLE = {name: o.not_searchable for name, o in TRIAL_OPTIONS.items() if o.not_searchable}
# Trial key -> (method, option of ``prune(..., method_options=...)``).
METHOD_OPTION_KEYS: dict[str, tuple[str, str]] = {o.name: tuple(o.method_option.split(":")) for o in METHOD_OPTIONS}


class _TrialKeys(Sequence):
    """The trial config's keys in their canonical order, read from ``TRIAL_OPTIONS`` when asked:
    a plug-in method's options join them when it registers (``add_method_keys``)."""

    def __len__(self) -> int:
        return len(TRIAL_OPTIONS)

    def __getitem__(self, index):
        return tuple(TRIAL_OPTIONS)[index]

    def __iter__(self):
        return iter(tuple(TRIAL_OPTIONS))

    def __contains__(self, key) -> bool:
        return key in TRIAL_OPTIONS

    def __repr__(self) -> str:
        return repr(tuple(TRIAL_OPTIONS))


TRIAL_KEYS: Sequence[str] = _TrialKeys()


def add_method_keys(method: str, options: Mapping[str, Option], *, check_only: bool = False) -> None:
    """Give every option of a registered method its trial key (``<method>_<option>``), so a space
    can set or search it and the trials table records it; the built-ins' keys exist already.
    A key that another option holds is a ValueError (nothing added)."""
    added = []
    for name, option in options.items():
        key = method_key(method, name)
        held = TRIAL_OPTIONS.get(key)
        if held is None:
            added.append(_method_key(method, name, option.kind))
        elif held.method_option != f"{method}:{name}" or held.kind != option.kind:
            raise ValueError(
                f"method {method!r}: its option {name!r} would be the trial key {key!r}, which is taken; "
                "rename the option or the method"
            )
    if check_only or not added:
        return
    for option in added:
        TRIAL_OPTIONS[option.name] = option
        TRIAL_DEFAULTS[option.name] = option.default
        METHOD_OPTION_KEYS[option.name] = (method, option.method_option.split(":")[1])
    COMPONENTS["method_options"] = (*COMPONENTS["method_options"], *added)


def method_options(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The options a config sets for ``method`` (its keys that are not None), by option name."""
    return {
        option: config[key]
        for key, (owner, option) in METHOD_OPTION_KEYS.items()
        if owner == method and config.get(key) is not None
    }


def component_defaults(component: str) -> dict[str, Any]:
    return {o.name: o.default for o in COMPONENTS[component]}


def resolve_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every option filled in, in the canonical order, typed and checked; PaituneError (one line) if not.

    An option a method does not read (``Option.used_by``) is held at its default.
    """
    unknown = sorted(set(values) - set(TRIAL_KEYS))
    if unknown:
        raise PaituneError(f"unknown trial config keys {unknown}; valid keys: {', '.join(TRIAL_KEYS)}")
    config = {}
    for name, option in TRIAL_OPTIONS.items():
        value = values.get(name, option.default)
        try:
            config[name] = coerce(option, value)
        except (TypeError, ValueError) as err:
            raise PaituneError(f"bad trial config value: {err}") from None
        check_value(option, config[name])
    for name, option in TRIAL_OPTIONS.items():
        if option.used_by and config["method"] not in option.used_by:
            config[name] = coerce(option, option.default)
    return config


def trial_config(tune_config: Mapping[str, Any]) -> dict[str, Any]:
    """The trial config inside a Tune config, which also carries the searcher's raw parameters."""
    return resolve_config({key: tune_config[key] for key in TRIAL_KEYS if key in tune_config})


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same config always gives the same text."""

    def default(obj):
        # numpy scalars and the like arrive from samplers; store their Python value.
        if hasattr(obj, "item"):
            return obj.item()
        raise TypeError(f"not JSON-serializable: {obj!r}")

    def finite(obj):
        if isinstance(obj, float) and not math.isfinite(obj):
            return repr(obj)
        if isinstance(obj, dict):
            return {k: finite(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [finite(v) for v in obj]
        return obj

    return json.dumps(finite(value), sort_keys=True, separators=(",", ":"), default=default)


def allocation_label(allocation: Any) -> str:
    """A config's allocation as results and messages name it: the scheme's name, or for an explicit
    {layer: density} map ``explicit:`` and 8 hex digits of the map's canonical JSON, so two
    different maps (two sweeps merged in one analysis) are never filed, and compared, as one
    allocation."""
    if isinstance(allocation, Mapping):
        digest = hashlib.sha256(canonical_json({k: float(v) for k, v in allocation.items()}).encode("utf-8"))
        return f"explicit:{digest.hexdigest()[:8]}"
    return str(allocation)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON, first 16 hex characters.

    Options declared with ``hashed_at_default=False`` are left out while at their default.
    """
    hashed = {
        key: value
        for key, value in config.items()
        if key not in TRIAL_OPTIONS or TRIAL_OPTIONS[key].hashed_at_default or value != TRIAL_OPTIONS[key].default
    }
    return hashlib.sha256(canonical_json(hashed).encode("utf-8")).hexdigest()[:16]
