"""Context vs choices: the one definition of a trial's *context* and its string id.

A PaI question is asked in a context (this dataset, this model, this sparsity, this training
budget); the choices under study (method, allocation, control, hyperparameters) are compared only
within a context. A space declares which of its trial config keys form the context
(``context: [...]``, default ``DEFAULT_CONTEXT_KEYS``); the seed is never part of it (seeds are the
replicate axis). Everything that groups trials by context (the searcher's per-context studies,
ASHA's per-context rungs, the trials table's ``context`` column, the analysis) derives it from
``context_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_CONTEXT_KEYS = ("dataset", "model", "sparsity", "epochs")
CONTEXT_COLUMN = "context"  # the trials table's column holding context_id(config)
# Keys that can never be context: the seed is the replicate axis, the rest are the choices a
# sweep compares or values only the searcher sets.
NOT_CONTEXT = ("seed", "method", "allocation", "control")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "x".join(_text(v) for v in value)
    return str(value)


def context_id(config: Mapping[str, Any], keys: Sequence[str] = DEFAULT_CONTEXT_KEYS) -> str:
    """A stable, readable id of a trial's context: ``dataset=digits,model=mlp,sparsity=0.875,epochs=16``.

    Floats are written with ``repr`` (round-trip exact), so two configs share an id exactly when
    they share every context value."""
    return ",".join(f"{key}={_text(config.get(key))}" for key in keys)


def parse_context_id(text: str) -> dict[str, str]:
    """The key -> value text pairs of a context id (values stay strings)."""
    pairs = (item.partition("=") for item in text.split(",") if item)
    return {key: value for key, _, value in pairs}
