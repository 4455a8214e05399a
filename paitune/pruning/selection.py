"""Turning scores into masks: keep exactly k, ties broken deterministically.

REFERENCE.md: "keep k" keeps the k highest scores, exactly k = round(density * N) of them. Ties go to
the lower flat index (of the concatenation in layer order, for global ranking), so the same scores
always give the same mask, on any device. ``torch.topk`` gives no such guarantee for ties; a
threshold from ``kthvalue`` plus an index-ordered tie fill does, in O(N) rather than a full sort.
"""

from __future__ import annotations

import torch


def keep_count(density: float, n: int) -> int:
    """round(density * n), clamped to [0, n]."""
    return max(0, min(n, int(round(density * n))))


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A bool mask over the flat ``scores`` keeping exactly the k highest; NaN ranks lowest."""
    flat = scores.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=flat.device)
    flat = torch.nan_to_num(flat.double(), nan=float("-inf"))
    # k-th largest = (n - k + 1)-th smallest
    threshold = torch.kthvalue(flat.cpu(), n - k + 1).values.to(flat.device)
    keep = flat > threshold
    missing = k - int(keep.sum())
    if missing > 0:
        tied = torch.nonzero(flat == threshold, as_tuple=False).reshape(-1)[:missing]
        keep[tied] = True
    return keep


def _top_k_among(flat: torch.Tensor, k: int, candidates: torch.Tensor | None) -> torch.Tensor:
    """top_k_mask restricted to ``candidates`` (the still-alive weights of an iterative method).

    Ranking only the candidates is what makes 100 SynFlow rounds cheap: the alive set shrinks
    geometrically. Ties still go to the lower flat index, as candidates keep their order.
    """
    if candidates is None:
        return top_k_mask(flat, k)
    idx = torch.nonzero(candidates.reshape(-1), as_tuple=False).reshape(-1)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[idx[top_k_mask(flat[idx], k)]] = True
    return keep


def select_global(
    scores: dict[str, torch.Tensor], density: float, candidates: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Rank all layers' scores together and keep round(density * N) overall (N counts all weights)."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).double() for n in names])
    alive = None if candidates is None else torch.cat([candidates[n].reshape(-1).cpu() for n in names])
    keep = _top_k_among(flat, keep_count(density, flat.numel()), alive)
    masks, start = {}, 0
    for name in names:
        size = scores[name].numel()
        masks[name] = keep[start : start + size].reshape(scores[name].shape)
        start += size
    return masks


def select_per_layer(
    scores: dict[str, torch.Tensor],
    densities: dict[str, float],
    candidates: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Each layer keeps its own round(density_l * N_l) highest scores."""
    return {
        name: _top_k_among(
            s.reshape(-1).double(),
            keep_count(densities[name], s.numel()),
            None if candidates is None else candidates[name].cpu(),
        ).reshape(s.shape)
        for name, s in scores.items()
    }
