"""Rules of a space that span fields or need the registries (methods, models, datasets, ...).

Every value a trial could receive is checked here, before anything runs: each categorical choice,
both ends of each range, each fixed value and each setting. Registries are imported lazily so
that loading a space stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from paitune.errors import PaituneError, unknown_choice
from paitune.spaces.config import FLOAT_KEYS, INT_KEYS, METHOD_OPTION_KEYS, TRIAL_DEFAULTS, TRIAL_KEYS
from paitune.spaces.schema import Categorical, Fixed, FloatRange, IntRange, Space

SEARCHED_ALLOCATION = "searched"  # allocation value that means "sample it from allocation_search"

# Keys a space may not search: the budget is fixed per sweep (ASHA's max_t), seeds have their own
# section (a replicate axis, not a tuned knob), and list/path values have no distribution.
NOT_SEARCHABLE = {
    "epochs": "epochs is the training budget (ASHA's max_t); set it under settings",
    "seed": "seeds are a replicate axis; list them under seeds:",
    "proxies": "proxies is a list of proxy names; set it under settings",
    "data_root": "data_root is a path; set it under settings",
    "synthetic_shape": "synthetic_shape is a list of sizes; set it under settings",
}


def registries() -> dict[str, tuple[str, ...]]:
    """Valid names per key, from the modules that implement them."""
    from paitune.data import DATASETS
    from paitune.models import MODELS
    from paitune.pruning import ALLOCATIONS, CONTROLS, METHODS, SCHEDULES
    from paitune.sparse.config import DROP_SCHEDULES, INIT_METHODS, POPUP_WEIGHT_INITS, SPARSE_METHODS
    from paitune.training import LR_SCHEDULES, OPTIMIZERS

    return {
        "dataset": tuple(DATASETS),
        "model": tuple(MODELS),
        "method": tuple(METHODS) + tuple(SPARSE_METHODS),
        "init_method": tuple(INIT_METHODS),
        "drop_schedule": tuple(DROP_SCHEDULES),
        "popup_weight_init": tuple(POPUP_WEIGHT_INITS),
        "control": tuple(CONTROLS),
        "schedule": tuple(SCHEDULES),
        "allocation": tuple(ALLOCATIONS) + (SEARCHED_ALLOCATION,),
        "optimizer": tuple(OPTIMIZERS),
        "lr_schedule": tuple(LR_SCHEDULES),
    }


def proxy_names() -> tuple[str, ...]:
    from paitune.proxies import PROXIES

    return tuple(PROXIES)


def _number(key: str, value: Any, *, integer: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and math.isnan(value))
    ):
        kind = "an integer" if integer else "a number"
        raise PaituneError(f"{key} must be {kind}, got {value!r}")
    if integer and float(value) != int(value):
        raise PaituneError(f"{key} must be an integer, got {value!r}")
    return float(value)


_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "sparsity": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (the fraction of weights removed)"),
    "lr": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "iterations": (lambda v: v >= 1, ">= 1"),
    "prune_batches": (lambda v: v >= 1, ">= 1"),
    "prune_batch_size": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "synthetic_classes": (lambda v: v >= 2, ">= 2"),
    "update_interval": (lambda v: v >= 1, ">= 1 optimizer step"),
    "rewind_epoch": (lambda v: v >= 0, ">= 0 (and below epochs)"),
    "drop_fraction": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "drop_until": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "imp_prune_fraction": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "swap_mu": (math.isfinite, "finite"),
    "swap_sigma": (lambda v: v > 0, "> 0"),
}
NULLABLE_KEYS = ("iterations", "swap_mu", "swap_sigma", *METHOD_OPTION_KEYS)  # None: the default


def check_value(key: str, value: Any) -> None:
    """Raise PaituneError unless ``value`` is a valid value of trial config key ``key``."""
    if key in NULLABLE_KEYS and value is None:
        return
    if key in METHOD_OPTION_KEYS:
        from paitune.pruning.registry import get_method

        method, option = METHOD_OPTION_KEYS[key]
        if key in FLOAT_KEYS or key in INT_KEYS:
            _number(key, value, integer=key in INT_KEYS)
        get_method(method).options[option].parse(key, value)
        return
    if key in FLOAT_KEYS or key in INT_KEYS:
        number = _number(key, value, integer=key in INT_KEYS)
        ok, rule = _RANGES[key]
        if not ok(number):
            raise PaituneError(f"{key} must be {rule}, got {value!r}")
        return
    if key == "proxies":
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise PaituneError(f"proxies must be a list of proxy names, got {value!r}")
        names = proxy_names()
        for p in value:
            if p not in names:
                raise unknown_choice("proxy", p, names)
        return
    if key == "synthetic_shape":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)
        ):
            raise PaituneError(f"synthetic_shape must be a list of positive sizes like [3, 32, 32], got {value!r}")
        return
    if key == "data_root":
        if value is not None and not isinstance(value, str):
            raise PaituneError(f"data_root must be a path, got {value!r}")
        return
    if key == "allocation" and isinstance(value, dict):
        for layer, density in value.items():
            d = _number(f"allocation[{layer}]", density, integer=False)
            if not 0.0 <= d <= 1.0:
                raise PaituneError(f"allocation[{layer}] must be a density in [0, 1], got {density!r}")
        return
    choices = registries()[key]
    if value not in choices:
        raise unknown_choice(key.replace("_", " "), value, choices)


def possible_values(param) -> Iterator[Any]:
    """The values of a parameter that bound what a trial can get: choices, range ends, the value."""
    if isinstance(param, Categorical):
        yield from param.choices
    elif isinstance(param, (FloatRange, IntRange)):
        yield param.low
        yield param.high
    elif isinstance(param, Fixed):
        yield param.value


def _check_conditions(space: Space) -> None:
    declared: dict[str, Any] = {}
    for name, param in space.params.items():
        for ref, values in (param.when or {}).items():
            where = f"params.{name}.when.{ref}"
            if ref in space.settings and ref not in space.params:
                continue  # fixed by a setting (e.g. --set method=snip): the condition is static
            if ref not in space.params:
                raise PaituneError(
                    f"{where}: condition on unknown parameter {ref!r}; conditions may name only parameters under params"
                )
            if ref not in declared:
                raise PaituneError(
                    f"{where}: {ref!r} must be declared before {name!r} (parameters are sampled in order)"
                )
            ref_param = declared[ref]
            if isinstance(ref_param, (Categorical, Fixed)):
                allowed = list(possible_values(ref_param))
                for v in values:
                    if v not in allowed:
                        raise PaituneError(f"{where}: {v!r} is not a value of {ref!r}; its values are {allowed}")
        declared[name] = param


def _check_allocation_search(space: Space) -> None:
    alloc = space.params.get("allocation")
    values = list(possible_values(alloc)) if alloc is not None else [space.settings.get("allocation")]
    uses_search = SEARCHED_ALLOCATION in values
    if uses_search and space.allocation_search is None:
        raise PaituneError(
            f"allocation {SEARCHED_ALLOCATION!r} needs an allocation_search: section (family: per_layer or depth)"
        )
    if space.allocation_search is not None and not uses_search:
        raise PaituneError(
            f"allocation_search is set but no trial uses it; add {SEARCHED_ALLOCATION!r} to the allocation choices"
        )


def _check_context(space: Space) -> None:
    """Context keys are trial config keys other than the choices and the seed, and a context
    parameter lists its values: contexts are covered by design, so they must be enumerable."""
    from paitune.spaces.context import DEFAULT_CONTEXT_KEYS, NOT_CONTEXT

    for i, key in enumerate(space.context or DEFAULT_CONTEXT_KEYS):
        where = f"context[{i}]"
        if key in NOT_CONTEXT:
            raise PaituneError(
                f"{where}: {key} cannot be context ({'the seed is the replicate axis' if key == 'seed' else 'it is a choice the sweep compares'})"
            )
        if key not in TRIAL_KEYS:
            raise unknown_choice("context key", key, [k for k in TRIAL_KEYS if k not in NOT_CONTEXT])
        param = space.params.get(key)
        if isinstance(param, (FloatRange, IntRange)):
            raise PaituneError(
                f"params.{key}: a context parameter must list its values (type: categorical), "
                f"so every context is covered; or leave {key} out of context: to search it as a choice"
            )
        if param is not None and param.when:
            raise PaituneError(f"params.{key}.when: a context parameter cannot be conditional")


def check_space(space: Space) -> Space:
    """Raise PaituneError (one line, naming the key) at the first rule the space breaks."""
    for key, value in space.settings.items():
        if key not in TRIAL_KEYS or key == "seed":
            hint = NOT_SEARCHABLE["seed"] if key == "seed" else None
            if hint:
                raise PaituneError(f"settings.seed: {hint}")
            raise unknown_choice("setting", key, [k for k in TRIAL_KEYS if k != "seed"])
        try:
            check_value(key, value)
        except PaituneError as err:
            raise PaituneError(f"settings.{key}: {err}") from None
    for name, param in space.params.items():
        if name in NOT_SEARCHABLE:
            raise PaituneError(f"params.{name}: {NOT_SEARCHABLE[name]}")
        if name not in TRIAL_KEYS:
            raise unknown_choice("parameter", name, [k for k in TRIAL_KEYS if k not in NOT_SEARCHABLE])
        if name in space.settings:
            raise PaituneError(f"params.{name}: also set under settings; keep one of the two")
        if isinstance(param, (FloatRange, IntRange)) and name not in FLOAT_KEYS + INT_KEYS:
            raise PaituneError(f"params.{name}: {name} takes names, not numbers; use type: categorical")
        if isinstance(param, FloatRange) and name in INT_KEYS:
            raise PaituneError(f"params.{name}: {name} is a whole number; use type: int")
        for value in possible_values(param):
            try:
                check_value(name, value)
            except PaituneError as err:
                raise PaituneError(f"params.{name}: {err}") from None
    for i, seed in enumerate(space.seeds):
        try:
            check_value("seed", seed)
        except PaituneError as err:
            raise PaituneError(f"seeds[{i}]: {err}") from None
    _check_conditions(space)
    _check_context(space)
    _check_allocation_search(space)
    budget = int(space.settings.get("epochs", TRIAL_DEFAULTS["epochs"]))
    sched = space.scheduler
    if sched.max_t is not None and sched.max_t != budget:
        raise PaituneError(
            f"scheduler.max_t ({sched.max_t}) must equal settings.epochs ({budget}), the training budget; drop max_t or change epochs"
        )
    if sched.grace_period > budget:
        raise PaituneError(f"scheduler.grace_period ({sched.grace_period}) exceeds the budget of {budget} epochs")
    return space
