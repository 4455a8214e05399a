"""One declared option of a config: its type, default, allowed values and help, written once.

Everything else about an option is derived from its ``Option``: the value checks of spaces and
trials (``check_value``), the command-line flags (``paitune.config.cli``), the Parquet column type
(``paitune.results.rows``), the hash a config gets (``paitune.config.trial``) and the table in
docs/config.md (``paitune.config.docs``).

Allowed names (datasets, models, methods, ...) come from the registries of the modules that
implement them. They are looked up when a value is checked, not when an option is declared, so the
config stays importable from every layer without import cycles.
"""

from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

from paitune.errors import PaituneError, unknown_choice

# What an option holds. "name": one of a registry's names; "bool": true or false; "path": a string or None; "shape": a list
# of positive sizes; "names": a list of a registry's names; "floats": a non-empty, strictly increasing list
# of numbers, each within the option's range; "allocation": a scheme name or a {layer: density} mapping.
KINDS = ("name", "int", "float", "bool", "path", "shape", "names", "floats", "allocation")
NUMERIC_KINDS = ("int", "float")


def _shown(bound: float | None) -> str:
    """A bound as a user writes it: whole numbers in full (2**32 is 4294967296, not 4.29497e+09)."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class Range:
    """Bounds of a number; ``None`` leaves that side open-ended."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""  # what the bound means, shown after it

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def text(self) -> str:
        low, high = _shown(self.low), _shown(self.high)
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {high}"
        else:
            text = "any number"
        return f"{text} {self.note}" if self.note else text


@dataclass(frozen=True)
class Option:
    name: str
    kind: str
    default: Any
    help: str
    component: str  # data, model, pruning, run, training, proxies, sparse
    # "module:attribute" of the registry holding the allowed names (kinds name and names): a tuple,
    # or a function returning one (a registry that grows when a plug-in registers a name).
    choices: str | None = None
    range: Range | None = None
    nullable: bool = False  # None is a valid value (it means the default behaviour, see help)
    # Why a space may not search this option (None: it may).
    not_searchable: str | None = None
    # The methods that read this option; a method that does not read it gets the default, so that
    # configs running the same experiment never differ in a key nobody looked at. () = every method.
    used_by: tuple[str, ...] = ()
    # Options added after configs were first hashed are left out of the hash while at their
    # default, so every config written before them keeps its hash (and its sweep stays resumable).
    hashed_at_default: bool = True
    what: str = ""  # how error messages name a value of it (default: the name with spaces)
    # "method:option": the trial key of a PaI method's own option (``prune(..., method_options=...)``),
    # whose default, rule and help the method's registration declares (``method_option_of``);
    # unset here means the method's default.
    method_option: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("name", "names") and self.choices is None and self.method_option is None:
            raise ValueError(f"option {self.name}: a {self.kind} option needs its registry (choices)")

    def allowed(self) -> tuple[str, ...]:
        """The registry's names (kinds name and names); () for a method option (the method checks)."""
        if self.choices is None:
            return ()
        module, attribute = self.choices.split(":")
        names = getattr(importlib.import_module(module), attribute)
        return tuple(names() if callable(names) else names)

    @property
    def label(self) -> str:
        return self.what or self.name.replace("_", " ")


def _number(key: str, value: Any, *, integer: bool) -> float:
    # numbers.Real: NumPy's scalars too (an np.int64 read from a table is an integer).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PaituneError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise PaituneError(f"{key} must be a finite number, got {value!r}")
    if integer and float(value) != int(value):
        raise PaituneError(f"{key} must be an integer, got {value!r}")
    return float(value)


def check_value(option: Option, value: Any, *, extra_names: tuple[str, ...] = ()) -> None:
    """Raise PaituneError (one line) unless ``value`` is a valid value of ``option``.

    Values come from YAML or the command line, so numbers must already be numbers: ``"0.1"`` is
    refused, ``3.0`` is a valid integer. ``extra_names`` are names valid in this place besides the
    registry's (a space's ``allocation: searched``).
    """
    key = option.name
    if value is None and option.nullable:
        return
    if option.kind in NUMERIC_KINDS:
        number = _number(key, value, integer=option.kind == "int")
        if option.range is not None and not option.range.holds(number):
            raise PaituneError(f"{key} must be {option.range.text()}, got {value!r}")
    elif option.kind == "bool":
        if not isinstance(value, bool):
            raise PaituneError(f"{key} must be true or false, got {value!r}")
    elif option.kind == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PaituneError(f"{key} must be a list of {option.label} names, got {value!r}")
        names = option.allowed()
        for v in value:
            if v not in names:
                raise unknown_choice(option.label, v, names)
    elif option.kind == "shape":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)
        ):
            raise PaituneError(f"{key} must be a list of positive sizes like [3, 32, 32], got {value!r}")
    elif option.kind == "floats":
        _check_floats(option, value)
    elif option.kind == "path":
        if not isinstance(value, str):
            raise PaituneError(f"{key} must be a path, got {value!r}")
    elif option.kind == "allocation" and isinstance(value, dict):
        for layer, density in value.items():
            d = _number(f"{key}[{layer}]", density, integer=False)
            if not 0.0 <= d <= 1.0:
                raise PaituneError(f"{key}[{layer}] must be a density in [0, 1], got {density!r}")
    elif option.choices is not None:  # a name (allocation: a scheme name)
        names = option.allowed() + extra_names
        if value not in names:
            raise unknown_choice(option.label, value, names)
    declared = method_option_of(option)
    if declared is not None:
        check_value(replace(declared, name=key), value)


def _check_floats(option: Option, value: Any) -> None:
    key = option.name
    within = f", each {option.range.text()}" if option.range is not None else ""
    if not isinstance(value, list) or not value:
        raise PaituneError(f"{key} must be a list of numbers like [0.5, 0.75]{within}, got {value!r}")
    for i, v in enumerate(value):
        number = _number(f"{key}[{i}]", v, integer=False)
        if option.range is not None and not option.range.holds(number):
            raise PaituneError(f"{key}[{i}] must be {option.range.text()}, got {v!r}")
    for i in range(1, len(value)):
        if not value[i - 1] < value[i]:
            raise PaituneError(f"{key} must be strictly increasing, got {value!r}")


def method_option_of(option: Option) -> Option | None:
    """The method's own declaration of a method option's trial key: its default, rule and help.

    Looked up in the method registry when asked, like the registries' names.
    """
    if option.method_option is None:
        return None
    method, name = option.method_option.split(":")
    return importlib.import_module("paitune.pruning.registry").get_method(method).options[name]


def coerce(option: Option, value: Any) -> Any:
    """The value in the option's Python type (numbers from samplers may be numpy scalars or
    whole floats); raises ValueError for a non-whole integer."""
    if value is None:
        return None
    if option.kind == "float":
        return float(value)
    if option.kind == "int":
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{option.name} must be a whole number, got {value!r}")
        return int(number)
    if option.kind == "bool":
        value = value.item() if hasattr(value, "item") else value  # numpy's bool from a sampler
        if not isinstance(value, bool):
            raise ValueError(f"{option.name} must be true or false, got {value!r}")
        return value
    if option.kind == "names":
        return [value] if isinstance(value, str) else list(value)
    if option.kind == "shape":
        return [int(d) for d in value]
    if option.kind == "floats":
        # Lists of plain numbers only: anything else is left as it is, for check_value to name.
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
        return value
    if option.kind == "allocation" and isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    return value
