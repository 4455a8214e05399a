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


# The dense reference: one unpruned model trained per dataset, model and budget (and seed), the
# line every trial's gap to dense is measured from. It shares the rest of a trial's context only
# where that context holds a data, model or training value (a context with augment in it gets one
# reference per augment value); the option components below do not exist for an unpruned model,
# so one reference serves every value of them (every sparsity, say).
DENSE_BASE_KEYS = ("dataset", "model", "epochs")
NOT_SHARED_BY_DENSE = ("pruning", "proxies", "sparse", "method_options")


def shared_by_dense(key: str) -> bool:
    """Whether a context key's value is one the context's dense reference is trained with."""
    from paitune.config import TRIAL_OPTIONS

    option = TRIAL_OPTIONS.get(key)
    return option is None or option.component not in NOT_SHARED_BY_DENSE


def reference_keys(context_keys: Sequence[str]) -> tuple[str, ...]:
    """The trial config keys a sweep runs one dense reference per value of (the seed aside): the
    dataset, model and budget, then the context's own keys that the reference shares."""
    extra = [k for k in context_keys if k not in DENSE_BASE_KEYS and shared_by_dense(k)]
    return DENSE_BASE_KEYS + tuple(extra)


def reference_setting(context: str) -> str:
    """The part of a context id, beyond dataset, model and budget, that its dense reference shares
    (``augment=standard``); empty when there is none (the reference runs the sweep's settings)."""
    return _pairs_where(context, lambda key: key not in DENSE_BASE_KEYS and shared_by_dense(key))


def context_setting(context: str) -> str:
    """The part of a context id beyond the default context's keys (dataset, model, sparsity,
    budget), which tables show as columns of their own (``lr=0.1,prune_batches=4``); empty when
    there is none."""
    return _pairs_where(context, lambda key: key not in DEFAULT_CONTEXT_KEYS)


def _pairs_where(context: str, keep) -> str:
    """The ``key=value`` pairs of a context id whose key ``keep`` accepts, as context id text."""
    return ",".join(f"{k}={v}" for k, v in parse_context_id(context).items() if keep(k))
