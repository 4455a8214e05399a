"""The method registry: a PaI method is one module plus one ``register_method(MethodSpec(...))``.

``prune`` reads everything it needs about a method from its spec: how to score (``make_scorer``)
or build the mask directly (``build_mask``), whether it needs scoring batches, its default number
of rounds and whether rounds are its setting at all, whether it may revive pruned weights, and the options ``method_options`` may set. Each
option is a ``paitune.config.Option`` (kind, default, range or choices, help), checked by the same
``check_value`` as every trial option. ``method_names()`` and the built-ins' ``METHODS``,
``DATA_METHODS`` and ``DEFAULT_ITERATIONS`` are derived from the registrations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..config.options import Option, check_value, coerce
from ..config.trial import add_method_keys
from ..errors import PaituneError
from ..registry import Registry
from . import seeds

Scores = dict[str, torch.Tensor]
MaskDict = dict[str, torch.Tensor]


def method_option(name: str, kind: str, default: Any, help: str, **rule: Any) -> Option:
    """One option of a method (``prune(..., method_options={name: value})``): its kind, its default
    when unset, its ``range=`` or ``choices=`` and its help, as every trial option declares them."""
    return Option(name, kind, default, help, "method_options", **rule)


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
    only accepts with global allocation and no control that changes scores (invert).
    """

    name: str
    make_scorer: Callable[[ScoringInputs], Callable[[MaskDict | None], Scores]] | None = None
    build_mask: Callable[[ScoringInputs, float], MaskDict] | None = None
    needs_data: bool = False  # scores with the batches: the data controls (corrupt_*) apply
    needs_input_shape: bool = False  # without batches, reads model.input_shape
    default_iterations: int | None = None  # rounds when the caller passes none (None: one round)
    # Whether rounds are a setting of the method (a sweep records and may search ``iterations``);
    # unset: the methods with default rounds. ProsPr prunes in one round unless asked for more.
    iterative: bool | None = None
    revives: bool = False  # scores all weights each round, so a pruned one may come back
    # Declared as a sequence of ``method_option(...)``; held as {name: Option}.
    options: Sequence[Option] | Mapping[str, Option] = ()

    def __post_init__(self):
        options = self.options.values() if isinstance(self.options, Mapping) else self.options
        object.__setattr__(self, "options", {option.name: option for option in options})
        if self.iterative is None:
            object.__setattr__(self, "iterative", self.default_iterations is not None)
        if self.iterative and self.build_mask is not None:
            raise ValueError(f"method {self.name!r} builds its mask in one step: it cannot be iterative")

    def check_option(self, name: str, value: Any, *, key: str | None = None) -> Any:
        """``value`` of option ``name`` in its type; a PaituneError (naming ``key``, default the name) if bad."""
        option = self.options[name]
        checked = option if key is None else replace(option, name=key)
        check_value(checked, value)
        return coerce(option, value)

    def check_option_names(self, names) -> None:
        unknown = sorted(str(k) for k in names if k not in self.options)
        if unknown:
            valid = ", ".join(self.options) if self.options else "none"
            raise PaituneError(f"method {self.name!r} takes no option {unknown[0]!r}; its options: {valid}")

    def resolve_options(self, given: Mapping | None) -> dict[str, Any]:
        """Every option's value (defaults filled in); an option the method does not take is an error."""
        if given is not None and not isinstance(given, Mapping):
            raise PaituneError(
                f"method {self.name!r}: method_options must be a mapping of option to value, got {type(given).__name__}"
            )
        given = dict(given or {})
        self.check_option_names(given)
        try:
            return {
                name: self.check_option(name, given[name]) if name in given else option.default
                for name, option in self.options.items()
            }
        except PaituneError as err:
            raise PaituneError(f"method {self.name!r}: {err}") from None


_METHODS: Registry[MethodSpec] = Registry("pruning method")


def register_method(spec: MethodSpec) -> MethodSpec:
    """Make ``spec.name`` a value of the trial option ``method`` (and ``init_method``), and each of
    its options a trial key ``<method>_<option>`` (``paitune.config.add_method_keys``)."""
    if (spec.make_scorer is None) == (spec.build_mask is None) and spec.name != "dense":
        raise ValueError(f"method {spec.name!r} needs exactly one of make_scorer and build_mask")
    add_method_keys(spec.name, spec.options, check_only=True)
    added = _METHODS.add(spec.name, spec)
    add_method_keys(spec.name, spec.options)
    return added


def get_method(name: str) -> MethodSpec:
    return _METHODS.get(name)


def registered() -> tuple[MethodSpec, ...]:
    return _METHODS.specs()


def method_names() -> tuple[str, ...]:
    """The PaI methods registered so far (plug-ins included), in registration order."""
    return _METHODS.names()
