"""Rules of a space that span fields or need the registries (methods, models, datasets, ...).

Every value a trial could receive is checked here, before anything runs: each categorical choice,
both ends of each range, each fixed value and each setting. Registries are imported lazily so
that loading a space stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from paitune.config import NOT_SEARCHABLE, TRIAL_DEFAULTS, TRIAL_KEYS, TRIAL_OPTIONS
from paitune.config.options import check_value as check_option
from paitune.errors import PaituneError, unknown_choice
from paitune.spaces.schema import Categorical, Fixed, FloatRange, IntRange, Space

SEARCHED_ALLOCATION = "searched"  # allocation value that means "sample it from allocation_search"


def check_value(key: str, value: Any) -> None:
    """Raise PaituneError unless ``value`` is a valid value of trial config key ``key`` in a space."""
    extra = (SEARCHED_ALLOCATION,) if key == "allocation" else ()
    check_option(TRIAL_OPTIONS[key], value, extra_names=extra)


def possible_values(param) -> Iterator[Any]:
    """The values of a parameter that bound what a trial can get: choices, range ends, the value."""
    if isinstance(param, Categorical):
        yield from param.choices
    elif isinstance(param, (FloatRange, IntRange)):
        yield param.low
        yield param.high
    elif isinstance(param, Fixed):
        yield param.value


def possible_setting_values(space: Space, key: str) -> list[Any]:
    """The values trial config key ``key`` takes in ``space``: its possible values when searched
    (``possible_values``), else its setting (or default); each once, in order."""
    if key in space.params:
        return list(dict.fromkeys(possible_values(space.params[key])))
    return [space.settings.get(key, TRIAL_DEFAULTS[key])]


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
        kind = TRIAL_OPTIONS[name].kind
        if isinstance(param, (FloatRange, IntRange)) and kind not in ("float", "int"):
            raise PaituneError(f"params.{name}: {name} takes names, not numbers; use type: categorical")
        if isinstance(param, FloatRange) and kind == "int":
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
