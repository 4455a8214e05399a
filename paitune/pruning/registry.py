"""The method registry: a PaI method is one module plus one ``register(MethodSpec(...))``.

``prune`` reads everything it needs about a method from its spec: how to score (``make_scorer``)
or build the mask directly (``build_mask``), whether it needs scoring batches, its default number
of rounds, whether it may revive pruned weights, and the options ``method_options`` may set.
``METHODS``, ``DATA_METHODS`` and ``DEFAULT_ITERATIONS`` are derived from the registrations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import PaituneError, unknown_choice
from . import seeds

Scores = dict[str, torch.Tensor]
MaskDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Option:
    """One per-method setting: its default and a parser that returns the value or raises PaituneError."""

    default: Any
    parse: Callable[[str, Any], Any]


def int_at_least(low: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        number = _number(name, value)
        if not float(number).is_integer() or number < low:
            raise PaituneError(f"method option {name} must be an integer >= {low}, got {value!r}")
        return int(number)

    return parse


def real(*, positive: bool = False, at_least: float | None = None) -> Callable[[str, Any], float]:
    def parse(name: str, value: Any) -> float:
        number = float(_number(name, value))
        if positive and not number > 0:
            raise PaituneError(f"method option {name} must be > 0, got {value!r}")
        if at_least is not None and not number >= at_least:
            raise PaituneError(f"method option {name} must be >= {at_least}, got {value!r}")
        return number

    return parse


def choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if value not in choices:
            raise PaituneError(f"method option {name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    return parse


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise PaituneError(f"method option {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PaituneError(f"method option {name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise PaituneError(f"method option {name} must be finite, got {value!r}")
    return number


@dataclass
class ScoringInputs:
    """What a method's scorer or mask builder may read: never changed by it."""

    model: nn.Module
    batches: Sequence | None
    input_shape: tuple[int, ...] | None
    seed: int
    options: dict[str, Any]

    def generator(self, purpose: str) -> torch.Generator:
        return seeds.generator(self.seed, purpose)


@dataclass(frozen=True)
class MethodSpec:
    """How ``prune`` runs one method.

    ``make_scorer(inputs)`` returns a function masks-so-far -> scores (CPU float64, higher = keep);
    a method without scores (PHEW) gives ``build_mask(inputs, density)`` instead, which ``prune``
    only accepts with global allocation and no invert control.
    """

    name: str
    make_scorer: Callable[[ScoringInputs], Callable[[MaskDict | None], Scores]] | None = None
    build_mask: Callable[[ScoringInputs, float], MaskDict] | None = None
    needs_data: bool = False  # scores with the batches: the corrupt_* controls apply
    needs_input_shape: bool = False  # without batches, reads model.input_shape
    default_iterations: int | None = None  # rounds when the caller passes none (None: one round)
    revives: bool = False  # scores all weights each round, so a pruned one may come back
    options: Mapping[str, Option] = field(default_factory=dict)

    def resolve_options(self, given: Mapping | None) -> dict[str, Any]:
        """Every option's value (defaults filled in); an option the method does not take is an error."""
        given = dict(given or {})
        unknown = sorted(str(k) for k in given if k not in self.options)
        if unknown:
            valid = ", ".join(self.options) if self.options else "none"
            raise PaituneError(f"method {self.name!r} takes no option {unknown[0]!r}; its options: {valid}")
        return {
            name: option.parse(name, given[name]) if name in given else option.default
            for name, option in self.options.items()
        }


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    if (spec.make_scorer is None) == (spec.build_mask is None) and spec.name != "dense":
        raise ValueError(f"method {spec.name!r} needs exactly one of make_scorer and build_mask")
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    if name not in _REGISTRY:
        raise unknown_choice("pruning method", name, _REGISTRY)
    return _REGISTRY[name]


def registered() -> tuple[MethodSpec, ...]:
    return tuple(_REGISTRY.values())
