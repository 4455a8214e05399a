"""Search spaces: YAML validated by a schema, compiled to an Optuna define-by-run function.

    space = load_space("default", overrides=["epochs=2"])   # a preset name or a YAML path
    compiled = compile_space(space)
    config = compiled.define_by_run(optuna_trial)           # the flat, resolved trial config

Presets ship as package data (``list_presets()``): default, sanity, allocation, zero_cost, cifar.
"""

from paitune.spaces.check import SEARCHED_ALLOCATION, check_space
from paitune.spaces.compile import CompiledSpace, compile_space, finalize
from paitune.spaces.loader import (
    apply_overrides,
    list_presets,
    load_space,
    load_space_text,
    preset_text,
    read_space_text,
)
from paitune.spaces.schema import Space

__all__ = [
    "SEARCHED_ALLOCATION",
    "CompiledSpace",
    "Space",
    "apply_overrides",
    "check_space",
    "compile_space",
    "finalize",
    "list_presets",
    "load_space",
    "load_space_text",
    "preset_text",
    "read_space_text",
]
