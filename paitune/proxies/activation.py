"""The activation-pattern proxies: naswot (Mellor et al. 2021, v2) and swap / swap_reg (Peng et al. 2024).

Both read every ReLU the network applies (``nn.ReLU`` modules and ``F.relu`` / ``torch.relu``
calls), one no-gradient forward of the batch in train mode (``train_mode``). Leaky ReLUs
(``nn.LeakyReLU``, ``F.leaky_relu``) are not ReLUs here, as REFERENCE-frontier.md words both
proxies and as the official SWAP hooks (``isinstance(m, nn.ReLU)``): a net whose only activation
is a leaky ReLU scores swap NaN and naswot -inf. (PX, which shares ``ReluCalls``, reads them.)

naswot: with c_i = 1[z > 0] of sample i over the inputs z of all ReLUs, K = C C^T + (1 - C)(1 - C)^T
counts the units on which two samples agree (K_ii = N_A); the score is log|det K| (-inf when K is
singular, log N_A for one sample).

swap: A = the outputs of every ReLU whose input is 4-D (a feature map), flattened per sample and
concatenated (samples x neurons); the score is the number of distinct columns of sign(A), the
activation patterns the batch tells apart neuron by neuron. NaN when there is no such ReLU (an
MLP). swap_reg scales it by exp(-(P / 1000 - mu)^2 / sigma), P the parameter count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from paitune.errors import PaituneError
from paitune.proxies.cost import params
from paitune.proxies.network import MaskedNet, train_mode
from paitune.pruning.relu_calls import ReluCalls, relu_inputs

_LEAKY_RELU = (F.leaky_relu, F.leaky_relu_)


class PlainReluCalls(ReluCalls):
    """``ReluCalls`` for ReLU proper: leaky ReLU calls run untouched and unseen."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _LEAKY_RELU:
            return func(*args, **(kwargs or {}))
        return super().__torch_function__(func, types, args, kwargs)


def naswot(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad(), train_mode(masked.net):
        _, inputs = relu_inputs(masked.net, x, calls=PlainReluCalls)
    if not inputs:
        return float("-inf")  # N_A = 0: K is the zero matrix
    codes = torch.cat([(z > 0).reshape(len(x), -1) for z in inputs], dim=1).to(torch.float64)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    if _singular(codes, kernel):
        return float("-inf")
    return float(torch.linalg.slogdet(kernel)[1])


def _singular(codes: torch.Tensor, kernel: torch.Tensor) -> bool:
    """Whether naswot's K = B B^T, B = [C, 1 - C], is singular (always when the batch has more
    than N_A + 1 samples).

    slogdet cannot tell: its LU factorization leaves rounding noise, not zeros, on a singular K.
    K's eigenvalues settle the clear cases at once; a near-zero one is decided by B's rank, from
    singular values that the squaring into K has not blurred. B spans what [C, 1] spans.
    """
    eigenvalues = torch.linalg.eigvalsh(kernel)
    if eigenvalues[0] > 1e-6 * eigenvalues[-1]:
        return False
    spanning = torch.cat([codes, torch.ones_like(codes[:, :1])], dim=1)
    return int(torch.linalg.matrix_rank(spanning)) < len(codes)


def swap(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    outputs: list[torch.Tensor] = []

    def record(z, default):
        out = default(z)
        if z.dim() == 4:
            outputs.append(out.detach().reshape(len(x), -1))
        return out

    with torch.no_grad(), train_mode(masked.net), PlainReluCalls(record):
        masked.net(x)
    if not outputs:
        return float("nan")
    signs = torch.sign(torch.cat(outputs, dim=1))
    return float(torch.unique(signs, dim=1).shape[1])


def swap_reg(
    masked: MaskedNet, x: torch.Tensor, y: torch.Tensor, *, swap_mu: float | None, swap_sigma: float | None
) -> float:
    mu, sigma = check_swap_settings(swap_mu, swap_sigma)
    thousands = params(masked, x, y) / 1000.0
    return swap(masked, x, y) * math.exp(-((thousands - mu) ** 2) / sigma)


def check_swap_settings(swap_mu, swap_sigma) -> tuple[float, float]:
    """(mu, sigma) of swap_reg's regularizer, or a PaituneError saying what to pass."""
    if swap_mu is None or swap_sigma is None:
        raise PaituneError(
            "proxy swap_reg needs swap_mu and swap_sigma (the target size in thousands of parameters and "
            "the width of the regularizer): pass both"
        )
    try:
        mu, sigma = float(swap_mu), float(swap_sigma)
    except (TypeError, ValueError):
        raise PaituneError(f"swap_mu and swap_sigma must be numbers, got {swap_mu!r} and {swap_sigma!r}") from None
    if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
        raise PaituneError(f"swap_reg needs a finite swap_mu and a swap_sigma > 0, got {swap_mu!r} and {swap_sigma!r}")
    return mu, sigma
