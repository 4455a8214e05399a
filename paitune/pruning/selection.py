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


def select_global(
    scores: dict[str, torch.Tensor], density: float, candidates: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Rank all layers' scores together and keep round(density * N) overall (N counts all weights).

    ``candidates`` (the still-alive weights of an iterative method) restricts the ranking to them:
    gathering only those is what makes 100 SynFlow rounds cheap, as the alive set shrinks
    geometrically. Candidates keep their layer-then-index order, so ties still go to the lower
    flat index.
    """
    names = list(scores)
    total = sum(scores[n].numel() for n in names)
    pieces, positions = [], []
    for name in names:
        flat = scores[name].reshape(-1)
        if candidates is not None:
            idx = torch.nonzero(candidates[name].reshape(-1).cpu(), as_tuple=False).reshape(-1)
            flat = flat[idx]
            positions.append(idx)
        pieces.append(flat.double())
    keep = top_k_mask(torch.cat(pieces), keep_count(density, total))
    masks, start = {}, 0
    for i, name in enumerate(names):
        part = keep[start : start + pieces[i].numel()]
        start += pieces[i].numel()
        if candidates is None:
            masks[name] = part.reshape(scores[name].shape)
        else:
            full = torch.zeros(scores[name].numel(), dtype=torch.bool)
            full[positions[i][part]] = True
            masks[name] = full.reshape(scores[name].shape)
    return masks


def _top_k_among(flat: torch.Tensor, k: int, candidates: torch.Tensor | None) -> torch.Tensor:
    """top_k_mask restricted to ``candidates``; ties go to the lower index."""
    if candidates is None:
        return top_k_mask(flat, k)
    idx = torch.nonzero(candidates.reshape(-1), as_tuple=False).reshape(-1)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[idx[top_k_mask(flat[idx], k)]] = True
    return keep


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
