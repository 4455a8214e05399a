"""Every ReLU a forward pass applies, whichever way the model calls it.

PX and the NASWOT / SWAP proxies read (or replace) each ReLU's input. Models call ReLU as
``nn.ReLU`` modules, ``F.relu`` or ``torch.relu`` (in place or not); module hooks see only the first
kind. A ``TorchFunctionMode`` sees them all, once per application, in call order: ``nn.ReLU``
calls ``F.relu``, and the mode is off while its handler runs, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# (function, in place) for every public spelling of ReLU and leaky ReLU.
_RELU = {
    F.relu: None,  # in place when its ``inplace`` argument says so
    F.relu_: True,
    torch.relu: False,
    torch.relu_: True,
    torch.Tensor.relu: False,
    torch.Tensor.relu_: True,
}
_LEAKY = {F.leaky_relu: None, F.leaky_relu_: True}

# on_relu(z, default) -> the value the call returns; ``default(z)`` is the unmodified ReLU of z.
Handler = Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]


class ReluCalls(TorchFunctionMode):
    """Within ``with ReluCalls(on_relu):`` every (leaky) ReLU call returns ``on_relu(z, default)``.

    z is the call's input as it was before any in-place write; the in-place spellings write the
    handler's result back into their argument, so the model sees the tensor it expects.
    """

    def __init__(self, on_relu: Handler):
        super().__init__()
        self.on_relu = on_relu

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU:
            inplace = _RELU[func]
            if inplace is None:
                inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            default = F.relu
        elif func in _LEAKY:
            inplace = _LEAKY[func]
            if inplace is None:
                inplace = bool(kwargs.get("inplace", args[2] if len(args) > 2 else False))
            slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)

            def default(t):
                return F.leaky_relu(t, slope)
        else:
            return func(*args, **kwargs)
        z = args[0]
        out = self.on_relu(z, default)
        if inplace and out is not z:
            z.copy_(out)
            return z
        return out


def relu_inputs(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, calls: type[ReluCalls] = ReluCalls
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The output of ``model(x)`` (a module or any function of x) and the input of every ReLU it
    applied, in call order (detached copies); ``calls`` says which calls are ReLUs (a subclass of
    ``ReluCalls`` may let some through unseen)."""
    seen: list[torch.Tensor] = []

    def record(z, default):
        seen.append(z.detach().clone())
        return default(z)

    with calls(record):
        out = model(x)
    return out, seen
