"""Plug-ins: modules that register models, datasets, methods or proxies, loaded in every process.

A registration made in the driver alone would not reach the Ray workers that run the trials, so a
plug-in is named where every process finds it:

- a Python entry point in the group ``paitune.plugins`` of an installed package
  (``[project.entry-points."paitune.plugins"] mine = "my_package.paitune_plugin"``), or
- the environment variable ``PAITUNE_PLUGINS``: comma-separated module names (on a cluster, set it
  on every node, e.g. in the Ray runtime environment).

``load_plugins()`` imports each once; the CLI, the sweep planner and each trial call it first.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from paitune.errors import PaituneError

ENTRY_POINT_GROUP = "paitune.plugins"
ENV_VAR = "PAITUNE_PLUGINS"
_loaded: set[str] = set()


def plugin_modules() -> list[str]:
    names = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    names += [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def load_plugins() -> list[str]:
    """Import every plug-in not imported yet; returns the modules imported by this call."""
    imported = []
    for name in plugin_modules():
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise PaituneError(f"paitune plug-in {name!r} could not be imported ({err}); check {ENV_VAR}") from None
        _loaded.add(name)
        imported.append(name)
    return imported
