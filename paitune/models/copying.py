"""``copy_module``: ``copy.deepcopy`` of a module, with less Python overhead.

Every ``nn.Module`` carries a dozen hook and bookkeeping containers (``_forward_hooks``,
``_state_dict_pre_hooks``, ``_non_persistent_buffers_set``, ...) that are almost always empty.
``copy.deepcopy`` rebuilds each of them through the generic pickle-protocol path, which is most of
the cost of copying a small network. An empty plain ``dict``, ``OrderedDict`` (without instance
attributes) or ``set`` deep-copies to a fresh empty container of the same type, so those are
pre-entered in deepcopy's memo as such; everything else (parameters, buffers, non-empty hooks, any
other attribute) goes through ``copy.deepcopy`` unchanged. The result is what ``copy.deepcopy``
returns, object for object.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn


def _fresh_empty(value: object) -> object | None:
    """A new empty container equal to what ``copy.deepcopy(value)`` returns, or None."""
    kind = type(value)
    if kind is dict or kind is set:
        return kind() if not value else None
    if kind is OrderedDict and not value and not vars(value):
        return OrderedDict()
    return None


def copy_module(module: nn.Module, memo: dict[int, object] | None = None) -> nn.Module:
    """``copy.deepcopy(module, memo)``, faster for the empty containers every module holds."""
    memo = {} if memo is None else memo
    for submodule in module.modules():
        for value in vars(submodule).values():
            if id(value) in memo:
                continue
            fresh = _fresh_empty(value)
            if fresh is not None:
                memo[id(value)] = fresh
    return copy.deepcopy(module, memo)
