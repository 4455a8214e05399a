"""The sparse methods' names, their choices, and the config rules that span several keys.

The methods SET, RigL, IMP and edge-popup are values of the trial config's ``method`` axis, like the
static PaI methods. Each reads a few extra options, declared with every other option in
``paitune.config.trial`` (component ``sparse``): their defaults, ranges and which method reads which
(``Option.used_by``) live there. A key a method does not read is held at its default by
``paitune.config.resolve_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import COMPONENTS
from ..errors import PaituneError
from ..pruning.registry import method_names

DST_METHODS = ("set", "rigl")
SPARSE_METHODS = ("set", "rigl", "imp", "edge_popup")


def pai_method(config: Mapping[str, Any]) -> str:
    """The method whose mask a trial starts from: a DST trial's ``init_method``, any other
    trial's ``method`` (which is no PaI method for imp and edge_popup, which pick their own)."""
    return config["init_method"] if config["method"] in DST_METHODS else config["method"]


def trial_methods() -> tuple[str, ...]:
    """Every value of the trial config's method axis: the PaI methods registered so far, then these."""
    return method_names() + SPARSE_METHODS


def init_methods() -> tuple[str, ...]:
    """A dynamic run starts from a static PaI mask; "dense" has nothing to start from at sparsity > 0."""
    return tuple(m for m in method_names() if m != "dense")


TRIAL_METHODS = trial_methods()  # with the built-in PaI methods
INIT_METHODS = init_methods()
DROP_SCHEDULES = ("cosine", "linear", "constant")
POPUP_WEIGHT_INITS = ("signed_constant", "model")

SPARSE_KEYS = tuple(o.name for o in COMPONENTS["sparse"])
SPARSE_DEFAULTS: dict[str, Any] = {o.name: o.default for o in COMPONENTS["sparse"]}
KEYS_BY_METHOD: dict[str, tuple[str, ...]] = {
    method: tuple(o.name for o in COMPONENTS["sparse"] if method in o.used_by) for method in SPARSE_METHODS
}
# Controls are sanity checks of a PaI mask; DST starts from one (so they apply to its start), while
# IMP and edge-popup choose their masks themselves.
CONTROL_FREE_METHODS = ("imp", "edge_popup")


def check_sparse_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The rules of a resolved trial config (``paitune.config.resolve_config``) that span keys."""
    out = dict(config)
    epochs = int(out.get("epochs", 1))
    if not 0 <= out["rewind_epoch"] < epochs:
        raise PaituneError(
            f"trial config key 'rewind_epoch' must be in [0, epochs) = [0, {epochs}), got {out['rewind_epoch']}"
        )
    method = out.get("method")
    if method in CONTROL_FREE_METHODS and out.get("control", "none") != "none":
        raise PaituneError(
            f"method {method!r} chooses its own mask, so controls do not apply: use control 'none' "
            f"(controls apply to the static methods and to the starting mask of set/rigl)"
        )
    return out
