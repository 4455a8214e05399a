"""The sparse methods' trial-config keys: their defaults, which method reads which, and validation.

The methods SET, RigL, IMP and edge-popup are values of the trial config's ``method`` axis, like the
static PaI methods. Each reads a few extra (conditional) keys. A key a method does not read is reset
to its default, so two configs that run the same experiment never differ (and never hash
differently) only in a key nobody looked at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import PaituneError, unknown_choice
from ..pruning import METHODS as STATIC_METHODS
from ..spaces.config import TRIAL_DEFAULTS

DST_METHODS = ("set", "rigl")
SPARSE_METHODS = ("set", "rigl", "imp", "edge_popup")
# A dynamic run starts from a static PaI mask; "dense" has nothing to start from at sparsity > 0.
INIT_METHODS = tuple(m for m in STATIC_METHODS if m != "dense")
DROP_SCHEDULES = ("cosine", "linear", "constant")
POPUP_WEIGHT_INITS = ("signed_constant", "model")

# The defaults live with every other trial-config default (paitune.spaces.config): one source.
SPARSE_KEYS = (
    "init_method",
    "update_interval",
    "drop_fraction",
    "drop_schedule",
    "drop_until",
    "imp_prune_fraction",
    "rewind_epoch",
    "popup_weight_init",
)
SPARSE_DEFAULTS: dict[str, Any] = {key: TRIAL_DEFAULTS[key] for key in SPARSE_KEYS}

KEYS_BY_METHOD: dict[str, tuple[str, ...]] = {
    "set": ("init_method", "update_interval", "drop_fraction", "drop_schedule", "drop_until"),
    "rigl": ("init_method", "update_interval", "drop_fraction", "drop_schedule", "drop_until"),
    "imp": ("imp_prune_fraction", "rewind_epoch"),
    "edge_popup": ("popup_weight_init",),
}
# Controls are sanity checks of a PaI mask; DST starts from one (so they apply to its start), while
# IMP and edge-popup choose their masks themselves.
CONTROL_FREE_METHODS = ("imp", "edge_popup")

_INT_KEYS = ("update_interval", "rewind_epoch")
_FLOAT_KEYS = ("drop_fraction", "drop_until", "imp_prune_fraction")


def _number(key: str, value, cast):
    if isinstance(value, bool):
        raise PaituneError(f"trial config key {key!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PaituneError(f"trial config key {key!r} must be a number, got {value!r}") from None
    if math.isnan(number):
        raise PaituneError(f"trial config key {key!r} must be a number, got NaN")
    if cast is int:
        if not number.is_integer():
            raise PaituneError(f"trial config key {key!r} must be a whole number, got {value!r}")
        return int(number)
    return number


def _in_range(key: str, value: float, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if bad_low or bad_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise PaituneError(f"trial config key {key!r} must be in {interval}, got {value:g}")


def check_sparse_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the sparse keys filled in (defaults), typed and validated.

    ``config`` is an otherwise resolved trial config (it has ``method``, ``epochs``, ``control``).
    """
    out = dict(config)
    for key, default in SPARSE_DEFAULTS.items():
        out[key] = out.get(key, default)
        if out[key] is None:
            out[key] = default
    for key in _INT_KEYS:
        out[key] = _number(key, out[key], int)
    for key in _FLOAT_KEYS:
        out[key] = _number(key, out[key], float)
    if out["init_method"] not in INIT_METHODS:
        raise unknown_choice("init_method (the starting mask of set/rigl)", out["init_method"], INIT_METHODS)
    if out["drop_schedule"] not in DROP_SCHEDULES:
        raise unknown_choice("drop_schedule", out["drop_schedule"], DROP_SCHEDULES)
    if out["popup_weight_init"] not in POPUP_WEIGHT_INITS:
        raise unknown_choice("popup_weight_init", out["popup_weight_init"], POPUP_WEIGHT_INITS)
    if out["update_interval"] < 1:
        raise PaituneError(f"trial config key 'update_interval' must be >= 1 step, got {out['update_interval']}")
    _in_range("drop_fraction", out["drop_fraction"], 0.0, 1.0, low_open=False, high_open=False)
    _in_range("drop_until", out["drop_until"], 0.0, 1.0, low_open=True, high_open=False)
    _in_range("imp_prune_fraction", out["imp_prune_fraction"], 0.0, 1.0, low_open=True, high_open=True)
    epochs = int(out.get("epochs", 1))
    if not 0 <= out["rewind_epoch"] < epochs:
        raise PaituneError(
            f"trial config key 'rewind_epoch' must be in [0, epochs) = [0, {epochs}), got {out['rewind_epoch']}"
        )
    method = out.get("method")
    used = KEYS_BY_METHOD.get(method, ())
    for key, default in SPARSE_DEFAULTS.items():
        if key not in used:
            # Nobody reads it: hold it at its default, so that configs running the same experiment
            # (e.g. a space that sets update_interval for every method) hash the same.
            out[key] = default
    if method in CONTROL_FREE_METHODS and out.get("control", "none") != "none":
        raise PaituneError(
            f"method {method!r} chooses its own mask, so controls do not apply: use control 'none' "
            f"(controls apply to the static methods and to the starting mask of set/rigl)"
        )
    return out
