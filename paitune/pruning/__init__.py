"""The PaI library's pruning API: scores, allocation, masks, controls, reports.

No Ray, no Optuna: usable from plain Python and from ``paitune prune``.
"""

from .allocation import ALLOCATIONS, FIXED_SCHEMES, SCORE_SCHEMES, allocate
from .api import (
    CONTROLS,
    DATA_CONTROLS,
    DATA_METHODS,
    DEFAULT_ITERATIONS,
    METHODS,
    SCHEDULES,
    check_choices,
    corrupt_batches,
    prune,
)
from .layers import layer_shapes, prunable_parameters
from .masks import MaskEnforcer, Masks, apply_masks, from_torch_prune, full_masks, mask_hash, to_torch_prune
from .report import LayerReport, MaskReport, count_flops, has_input_output_path, mask_report

__all__ = [
    "ALLOCATIONS",
    "CONTROLS",
    "DATA_CONTROLS",
    "DATA_METHODS",
    "check_choices",
    "corrupt_batches",
    "DEFAULT_ITERATIONS",
    "FIXED_SCHEMES",
    "METHODS",
    "SCHEDULES",
    "SCORE_SCHEMES",
    "LayerReport",
    "MaskEnforcer",
    "MaskReport",
    "Masks",
    "allocate",
    "apply_masks",
    "count_flops",
    "from_torch_prune",
    "full_masks",
    "has_input_output_path",
    "layer_shapes",
    "mask_hash",
    "mask_report",
    "prunable_parameters",
    "prune",
    "to_torch_prune",
]
