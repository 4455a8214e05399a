"""``forward_flops``: a network's forward FLOPs for one sample, in total and per module.

The counting is ``torch.utils.flop_counter.FlopCounterMode``'s: a multiply-add counts as 2, and a
module's count includes its submodules'. The mask report (dense and pruned FLOPs) and the ``flops``
proxy both read it from here.

Two places where the counter alone falls short, both about attention. Fused kernels it has no
formula for count 0: ``nn.MultiheadAttention``'s inference fast path and, on CPU, the fused
``scaled_dot_product_attention`` (a batch-first attention layer counted 0 FLOPs in eval mode);
counting runs with the fast path off and the math attention kernel, whose matmuls it counts.
And ``nn.MultiheadAttention`` applies its ``out_proj`` weight without calling ``out_proj``, so
that prunable Linear got no count of its own (its density never scaled the pruned FLOPs): it is
given the count of the matmul the attention layer runs with it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

PAIR = 2  # samples in the counted batch


def forward_flops(model: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per module path) of ``model`` on one sample, ``example[:1]``.

    Module paths are ``model.named_modules()`` names, ``""`` for the model itself. The model runs
    as it is (set eval mode first where batch statistics would matter), under ``torch.no_grad``.
    """
    # The sample runs twice in one batch and the counts are halved: every op the counter counts
    # (matmuls, convolutions, attention) is linear in the batch, and a batch norm that keeps no
    # running statistics, which normalizes by the batch even in eval mode, needs two values per
    # channel.
    pair = example[:1].expand(PAIR, *example.shape[1:])
    root = type(model).__name__  # the counter names modules "<root class>.<path>"
    out_proj_flops: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        for name, module in model.named_modules():
            if isinstance(module, nn.MultiheadAttention):
                hook = module.register_forward_pre_hook(
                    _out_proj_counter(name, module, out_proj_flops), with_kwargs=True
                )
                stack.callback(hook.remove)
        stack.enter_context(_counted_attention())
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(pair)
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root:
            per_module[""] = sum(ops.values()) // PAIR
        elif key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = sum(ops.values()) // PAIR
    for name, flops in out_proj_flops.items():
        per_module[name] = per_module.get(name, 0) + flops // PAIR
    return counter.get_total_flops() // PAIR, per_module


@contextlib.contextmanager
def _counted_attention():
    """Attention as matmuls the counter counts: MultiheadAttention's fast path off, the math
    kernel for scaled_dot_product_attention."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _out_proj_counter(name: str, attention: nn.MultiheadAttention, into: dict[str, int]):
    """A forward pre-hook adding the FLOPs of ``attention``'s output projection (2 per multiply-add,
    as the counter counts a matmul) under ``<name>.out_proj``."""
    path = f"{name}.out_proj" if name else "out_proj"

    def hook(module, args, kwargs):
        query = args[0] if args else kwargs["query"]
        tokens = query.shape[:-1].numel()  # (L, N), (N, L) or unbatched (L,): every token is projected
        weight = attention.out_proj.weight
        into[path] = into.get(path, 0) + 2 * tokens * weight.shape[0] * weight.shape[1]

    return hook
