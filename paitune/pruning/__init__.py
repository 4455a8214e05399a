"""The PaI library's pruning API: scores, allocation, masks, controls, reports.

No Ray, no Optuna: usable from plain Python and from ``paitune prune``. Methods
(``register_method``), allocations (``register_allocation``) and controls (``register_control``)
are registries: a new one is one module and one registration.
"""

from .allocation import (
    ALLOCATIONS,
    AllocationSpec,
    allocate,
    allocation_names,
    allocation_spec,
    register_allocation,
)
from .api import (
    DATA_METHODS,
    DEFAULT_ITERATIONS,
    METHODS,
    SCHEDULES,
    check_choices,
    prune,
)
from .controls import CONTROLS, ControlSpec, control_names, control_spec, corrupt_batches, register_control
from .layers import layer_shapes, prunable_parameters
from .masks import MaskEnforcer, Masks, apply_masks, from_torch_prune, full_masks, mask_hash, to_torch_prune
from .registry import MethodSpec, ScoringInputs, get_method, method_names, method_option, register_method
from .report import LayerReport, MaskReport, count_flops, has_input_output_path, mask_report

__all__ = [
    "ALLOCATIONS",
    "CONTROLS",
    "DATA_METHODS",
    "DEFAULT_ITERATIONS",
    "METHODS",
    "SCHEDULES",
    "AllocationSpec",
    "ControlSpec",
    "MethodSpec",
    "ScoringInputs",
    "LayerReport",
    "MaskEnforcer",
    "MaskReport",
    "Masks",
    "allocate",
    "allocation_names",
    "allocation_spec",
    "apply_masks",
    "check_choices",
    "control_names",
    "control_spec",
    "corrupt_batches",
    "count_flops",
    "from_torch_prune",
    "full_masks",
    "get_method",
    "has_input_output_path",
    "layer_shapes",
    "mask_hash",
    "mask_report",
    "method_names",
    "method_option",
    "prunable_parameters",
    "prune",
    "register_allocation",
    "register_control",
    "register_method",
    "to_torch_prune",
]
