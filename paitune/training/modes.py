"""How a trainer runs its model: precision (autocast), memory layout and compilation.

None of these change what is trained. Parameters stay float32 under autocast (bf16 / fp16 are
the dtypes of the matmuls and convolutions only), so the optimizer updates float32 master
weights and the mask enforcer, an optimizer step post-hook, zeroes them exactly. fp16 needs loss
scaling against gradient underflow: a ``GradScaler`` skips a step whose gradients overflowed, and
a skipped step leaves the masked weights as they were.

``compile`` wraps the model's forward in ``torch.compile`` once per worker process and
architecture: trials that run one after another in a worker with the same model (same parameter
names, shapes, dtypes and device) share one compiled forward, fed each trial's own parameters
through ``torch.func.functional_call``. A new trial therefore pays no second compilation.
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_COMPILED_MAX = 8  # architectures kept per process; each holds a parameter-free template module
_compiled: OrderedDict[tuple, tuple[nn.Module, Callable]] = OrderedDict()


def autocast(device: torch.device, precision: str):
    """The context a forward pass runs in (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16; None otherwise (bf16 has float32's exponent range)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Images (4-D) in channels-last memory when asked; every other tensor as it is."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _architecture_key(model: nn.Module) -> tuple:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return (
        type(model).__module__,
        type(model).__qualname__,
        tuple((name, tuple(t.shape), t.dtype, str(t.device), t.stride()) for name, t in tensors),
    )


def compiled_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s forward through the process's compiled forward for its architecture."""
    key = _architecture_key(model)
    entry = _compiled.get(key)
    if entry is None:
        # The template holds the structure only: functional_call swaps the trial's tensors in.
        template = copy.deepcopy(model).to("meta")

        def forward(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(template, (params, buffers), (x,))

        entry = (template, torch.compile(forward))
        _compiled[key] = entry
        while len(_compiled) > _COMPILED_MAX:
            _compiled.popitem(last=False)
    _compiled.move_to_end(key)
    template, compiled = entry
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def call(x: torch.Tensor) -> torch.Tensor:
        if template.training != model.training:  # BatchNorm's mode follows the trial's model
            template.train(model.training)
        return compiled(params, buffers, x)

    return call


def compiled_count() -> int:
    """Compiled forwards held by this process (one per architecture seen)."""
    return len(_compiled)
