"""One registry for every kind of name a plug-in can add: methods, allocations, controls, proxies,
datasets and models.

A registry maps a name to its spec in registration order, the order help, docs and errors list
them in. Registering a name twice is an error (a plug-in may not replace a built-in silently);
looking up an unknown name is the project's one-line error naming the choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from paitune.errors import unknown_choice

Spec = TypeVar("Spec")


class Registry(Generic[Spec]):
    def __init__(self, kind: str):
        self.kind = kind  # "pruning method", "dataset", ...: how errors name a value
        self._specs: dict[str, Spec] = {}

    def add(self, name: str, spec: Spec) -> Spec:
        if name in self._specs:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._specs[name] = spec
        return spec

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def specs(self) -> tuple[Spec, ...]:
        return tuple(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._specs

    def get(self, name: object, *, also: Iterable[str] = ()) -> Spec:
        """The spec registered as ``name``; otherwise the one-line error listing the names (and
        ``also``: other forms the option accepts)."""
        if name not in self:
            raise unknown_choice(self.kind, name, (*self._specs, *also))
        return self._specs[name]
