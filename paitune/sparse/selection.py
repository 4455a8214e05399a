"""Top-k selections the sparse methods share: within a candidate set, per layer or across layers.

Every selection returns exactly the requested number of weights, ties to the lower flat index
(``paitune.pruning.selection.top_k_mask``, as every PaI mask), so densities are exact counts, not
thresholds that ties could overshoot, and equal scores give the same mask on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..pruning.allocation import allocate, allocation_spec, ranks_scores
from ..pruning.selection import top_k_mask as keep_top_k


def top_k_mask(scores: torch.Tensor, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask (shape of ``scores``) of the ``k`` largest scores among ``candidates`` (all if None).

    ``k`` is capped at the number of candidates.
    """
    flat = scores.detach().reshape(-1).double()
    if candidates is None:
        return keep_top_k(flat, max(0, int(k))).reshape(scores.shape)
    # Ranked among the candidates alone (in flat order, so ties still go to the lower index).
    index = torch.nonzero(candidates.reshape(-1), as_tuple=False).reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[index[keep_top_k(flat[index], max(0, int(k)))]] = True
    return mask.reshape(scores.shape)


def global_top_k(
    scores: Mapping[str, torch.Tensor], k: int, candidates: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The ``k`` largest scores ranked across all tensors, as one bool mask per name."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).double() for n in names])
    allowed = None if candidates is None else torch.cat([candidates[n].reshape(-1) for n in names])
    chosen = top_k_mask(flat, k, allowed)
    out, start = {}, 0
    for name in names:
        size = scores[name].numel()
        out[name] = chosen[start : start + size].reshape(scores[name].shape)
        start += size
    return out


def layer_densities(shapes: Mapping[str, tuple], sparsity: float, allocation) -> dict[str, float] | None:
    """Per-layer densities of a fixed allocation (a scheme name or a {layer: density} map).

    ``None`` for an allocation that ranks scores across layers (global, lamp): its densities emerge
    from the scores.
    """
    if ranks_scores(allocation):
        return None
    return allocate(shapes, sparsity, allocation)


def magnitude_normalizer(allocation) -> Callable[[dict], dict] | None:
    """How a score-ranked allocation makes magnitudes comparable across layers (None: as they are)."""
    return allocation_spec(allocation).magnitude_normalizer()


def keep_counts(sizes: Mapping[str, int], densities: Mapping[str, float]) -> dict[str, int]:
    """Whole numbers of weights to keep per layer."""
    return {name: int(round(densities[name] * sizes[name])) for name in sizes}
