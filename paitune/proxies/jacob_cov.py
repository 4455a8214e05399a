"""The jacob_cov proxy (Mellor et al. 2021, as scored by Abdelfattah et al. 2021).

A network whose per-sample input Jacobians are decorrelated tells inputs apart at init. With J
the (batch x input_dim) matrix of gradients of sum(outputs) w.r.t. each input, C = corrcoef(J)
and l_i its eigenvalues, the score is -sum_i [log(l_i + k) + 1 / (l_i + k)] with k = 1e-5:
highest (about -batch) when C is the identity, very negative when the rows are collinear.
NaN for one sample (no correlation matrix) or a constant Jacobian row.
"""

from __future__ import annotations

import numpy as np
import torch

from paitune.proxies.network import MaskedNet, train_mode

_EPS = 1e-5


def jacob_cov_score(jacobians: np.ndarray) -> float:
    """The score of a (batch x input_dim) Jacobian matrix; NaN when a row is constant or there is
    only one row.

    A constant row (e.g. a net whose output ignores one input) has no correlation with the
    others, and Abdelfattah et al.'s code scores such a net NaN as well. One sample's Jacobian
    has no correlation matrix at all (their code fails on it and scores NaN); without this check
    corrcoef would return 1 and every network would score -(log(1 + k) + 1 / (1 + k)).
    """
    if jacobians.shape[0] < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.atleast_2d(np.corrcoef(jacobians))
    if not np.all(np.isfinite(corr)):
        return float("nan")
    # C is symmetric positive semi-definite: eigvalsh gives real eigenvalues; clipping removes
    # rounding noise below zero that would otherwise put a negative number into the log.
    eigenvalues = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(eigenvalues + _EPS) + 1.0 / (eigenvalues + _EPS)))


def input_jacobians(masked: MaskedNet, x: torch.Tensor) -> np.ndarray:
    """d sum(f(x)) / dx per sample, flattened to (batch x input_dim), model in train mode.

    As in Abdelfattah et al., one backward of the summed outputs; in train mode batch norm
    couples the samples, and those cross-sample terms are part of the published score.
    """
    inputs = x.clone().requires_grad_(True)
    with train_mode(masked.net):
        out = masked.net(inputs)
    # An output that does not depend on the input (a layer that zeroes it) has a zero Jacobian.
    (grad,) = torch.autograd.grad(out.sum(), inputs, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inputs)
    return grad.reshape(len(x), -1).detach().to(torch.float64).cpu().numpy()


def jacob_cov(masked: MaskedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """The jacob_cov score of the network on the batch inputs (labels unused)."""
    return jacob_cov_score(input_jacobians(masked, x))
