"""The trial config: the flat dict of resolved values one trial runs with, and its content hash.

Every key ``paitune.search.pipeline.prepare_trial`` accepts is listed in ``TRIAL_DEFAULTS`` with the
value a space gets when it says nothing about that key, so a trial config is always complete and two
configs that run the same experiment hash the same.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

TRIAL_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_root": None,
    "synthetic_shape": [3, 32, 32],  # only the synthetic dataset reads these two
    "synthetic_classes": 10,
    "model": "mlp",
    "method": "random",
    "sparsity": 0.9,
    "allocation": "global",
    "control": "none",
    "iterations": None,  # only iterative methods use it; None = the method's own default
    "schedule": "exponential",
    "prune_batches": 1,
    "prune_batch_size": 256,
    "seed": 0,
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_schedule": "cosine",
    "proxies": [],
    # The sparse-training methods' keys (paitune.sparse reads them; each only for its own methods).
    "init_method": "random",  # set/rigl: the static PaI method of the starting mask
    "update_interval": 100,  # set/rigl: optimizer steps between mask updates
    "drop_fraction": 0.3,  # set/rigl: fraction of each layer's active weights moved per update, at step 0
    "drop_schedule": "cosine",  # set/rigl: how that fraction decays to 0
    "drop_until": 0.75,  # set/rigl: fraction of all training steps after which the mask is frozen
    "imp_prune_fraction": 0.2,  # imp: fraction of the remaining weights removed per round
    "rewind_epoch": 0,  # imp: epoch of the dense run every round rewinds to (0 = init)
    "popup_weight_init": "signed_constant",  # edge_popup: frozen weights, +-sqrt(2/fan_in) or the model's init
    # The PaI methods' own options (METHOD_OPTION_KEYS); None = the method's default.
    "prospr_inner_steps": None,
    "prospr_inner_lr": None,
    "prospr_inner_momentum": None,
    "prospr_meta_grads": None,
    "ntk_sap_epsilon": None,
    "ntk_sap_resamples": None,
    # swap_reg's regularizer (paitune.proxies): center and width in thousands of parameters.
    "swap_mu": None,
    "swap_sigma": None,
}
TRIAL_KEYS = tuple(TRIAL_DEFAULTS)

# Trial key -> (method, option of ``prune(..., method_options=...)``), for the methods that take options.
METHOD_OPTION_KEYS: dict[str, tuple[str, str]] = {
    "prospr_inner_steps": ("prospr", "inner_steps"),
    "prospr_inner_lr": ("prospr", "inner_lr"),
    "prospr_inner_momentum": ("prospr", "inner_momentum"),
    "prospr_meta_grads": ("prospr", "meta_grads"),
    "ntk_sap_epsilon": ("ntk_sap", "epsilon"),
    "ntk_sap_resamples": ("ntk_sap", "resamples"),
}


def method_options(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The options a config sets for ``method`` (its keys that are not None), by option name."""
    return {
        option: config[key]
        for key, (owner, option) in METHOD_OPTION_KEYS.items()
        if owner == method and config.get(key) is not None
    }


# Keys that must hold whole numbers, and keys that must hold real numbers.
INT_KEYS = (
    "iterations",
    "prune_batches",
    "prune_batch_size",
    "seed",
    "epochs",
    "batch_size",
    "synthetic_classes",
    "update_interval",
    "rewind_epoch",
    "prospr_inner_steps",
    "ntk_sap_resamples",
)
FLOAT_KEYS = (
    "sparsity", "lr", "momentum", "weight_decay", "drop_fraction", "drop_until", "imp_prune_fraction",
    "prospr_inner_lr", "prospr_inner_momentum", "ntk_sap_epsilon", "swap_mu", "swap_sigma",
)  # fmt: skip


def resolve_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill every default in, in the canonical key order; unknown keys are a programming error."""
    unknown = sorted(set(values) - set(TRIAL_KEYS))
    if unknown:
        raise KeyError(f"not trial config keys: {unknown}")
    config = {key: values.get(key, default) for key, default in TRIAL_DEFAULTS.items()}
    for key in FLOAT_KEYS:
        if config[key] is not None:
            config[key] = float(config[key])
    for key in INT_KEYS:
        if config[key] is not None:
            number = float(config[key])
            if not number.is_integer():
                raise ValueError(f"{key} must be a whole number, got {config[key]!r}")
            config[key] = int(number)
    config["proxies"] = list(config["proxies"] or [])
    config["synthetic_shape"] = [int(d) for d in config["synthetic_shape"]]
    if isinstance(config["allocation"], Mapping):
        config["allocation"] = {str(k): float(v) for k, v in config["allocation"].items()}
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


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON, first 16 hex characters."""
    return hashlib.sha256(canonical_json(dict(config)).encode("utf-8")).hexdigest()[:16]
