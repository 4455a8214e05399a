"""``prune``: one PaI method at one sparsity under one layerwise allocation, with a control.

Method and allocation are orthogonal (DESIGN.md): with ``global`` (or ``lamp``) the method's scores
are ranked across layers and the per-layer densities emerge; with any other allocation the densities
are fixed first (``allocate``) and each layer keeps its own top scores. Iterative methods prune over
``iterations`` rounds, round t reaching density_t = density ** (t / T) (exponential schedule, per
layer for fixed allocations) or 1 - (1 - density) * t / T (linear), each round rescoring the masked
net. Only FORCE may revive a weight pruned in an earlier round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import PaituneError, unknown_choice
from ..models.copying import copy_module
from ..models.registry import seed_cpu_generator
from . import scores as S
from .allocation import SCORE_SCHEMES, allocate, check_sparsity
from .layers import layer_shapes, prunable_parameters
from .masks import Masks
from .selection import select_global, select_per_layer

METHODS = ("dense", "random", "magnitude", "snip", "grasp", "synflow", "iterative_snip", "force")
DATA_METHODS = ("snip", "grasp", "iterative_snip", "force")  # need scoring batches
# Sanity checks (Frankle et al. 2021; Su et al. 2020). The corrupt_* controls score with corrupted
# data (random labels, or each image's pixels shuffled) and only apply to the data-dependent methods;
# for the others the mask is the unmodified one and ``masks.meta["control_applies"]`` is False.
CONTROLS = ("none", "shuffle", "reinit", "invert", "corrupt_labels", "corrupt_pixels")
DATA_CONTROLS = ("corrupt_labels", "corrupt_pixels")
SCHEDULES = ("exponential", "linear")
# Rounds when the caller passes no ``iterations``: SynFlow's paper and code use 100.
DEFAULT_ITERATIONS = {"synflow": 100, "iterative_snip": 100, "force": 100}
REVIVING_METHODS = ("force",)  # FORCE scores all weights each round; the others only the alive ones

# Salts that derive independent random streams from one seed, so that e.g. the shuffle control's
# permutation does not depend on whether the method itself drew random scores.
_SALT = {"scores": 0, "shuffle": 1, "reinit": 2, "corrupt": 3}


def _derived_seed(seed: int, purpose: str) -> int:
    return (int(seed) * 1_000_003 + _SALT[purpose]) % (2**63)


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(_derived_seed(seed, purpose))


def round_density(final: float, t: int, rounds: int, schedule: str) -> float:
    """Target density after round t of T."""
    if schedule == "exponential":
        return final ** (t / rounds)
    return 1.0 - (1.0 - final) * t / rounds


def _check_args(method, allocation, control, schedule, iterations, batches, input_shape):
    if method not in METHODS:
        raise unknown_choice("pruning method", method, METHODS)
    if control not in CONTROLS:
        raise unknown_choice("control", control, CONTROLS)
    if schedule not in SCHEDULES:
        raise unknown_choice("schedule", schedule, SCHEDULES)
    if iterations is not None and (not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1):
        raise PaituneError(f"iterations must be a positive integer, got {iterations!r}")
    if method in DATA_METHODS and not batches:
        raise PaituneError(f"method {method!r} scores with data: pass batches=[(x, y), ...]")
    if method == "synflow" and input_shape is None:
        raise PaituneError("synflow needs the input shape: pass batches or set model.input_shape")


def _input_shape(model: nn.Module, batches) -> tuple[int, ...] | None:
    if batches:
        return tuple(batches[0][0].shape[1:])
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else None


def _scorer(model: nn.Module, method: str, batches, input_shape, seed: int):
    """A function masks -> scores (CPU, float64) for ``method``, holding its scratch copy."""
    params = prunable_parameters(model)
    if method == "random":
        fixed = S.random_scores(params, _generator(seed, "scores"))
        return lambda masks: fixed
    if method == "magnitude":
        fixed = S.magnitude_scores(params)
        return lambda masks: fixed
    if method == "synflow":
        scratch = S.SynflowCopy(model)
        return lambda masks: S.synflow_scores(scratch, masks, input_shape)
    scratch = S.ScoringCopy(model)
    if method == "grasp":
        return lambda masks: S.grasp_scores(scratch, masks, batches)
    return lambda masks: S.snip_scores(scratch, masks, batches)  # snip, iterative_snip, force


def _fresh_weights(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """All parameters re-drawn from the model's own initializer (``reset_parameters``), seeded.

    Drawn on a CPU copy: the same seed gives the same weights on every device, and no CUDA RNG
    state is consumed. ``apply_masks`` moves them to the model's device.
    """
    scratch = copy_module(model).cpu()
    with torch.random.fork_rng(devices=[]):
        seed_cpu_generator(_derived_seed(seed, "reinit"))
        if callable(getattr(scratch, "reset_parameters", None)):
            scratch.reset_parameters()  # the model's own init (paitune's models define one)
        else:
            for module in scratch.modules():
                if module is not scratch and callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
    return {name: p.detach().clone() for name, p in scratch.named_parameters()}


def _shuffle(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Same count per layer, positions permuted uniformly at random within the layer."""
    gen = _generator(seed, "shuffle")
    out = {}
    for name, m in masks.items():
        flat = m.reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        out[name] = flat[perm].reshape(m.shape)
    return out


def corrupt_batches(batches: Sequence, control: str, seed: int) -> list:
    """The scoring batches with labels replaced by uniform random ones, or each image's pixels shuffled.

    Random labels are drawn uniformly from the classes seen in the batches (Su et al.'s "random
    labels"); pixel shuffling permutes all of an image's elements independently per image.
    """
    gen = _generator(seed, "corrupt")
    classes = int(max(int(y.max()) for _, y in batches)) + 1
    out = []
    for x, y in batches:
        if control == "corrupt_labels":
            y = torch.randint(0, classes, y.shape, generator=gen).to(y.device, y.dtype)
        else:
            flat = x.reshape(x.shape[0], -1)
            order = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1).to(x.device)
            x = torch.gather(flat, 1, order).reshape(x.shape)
        out.append((x, y))
    return out


def prune(
    model: nn.Module,
    method: str,
    *,
    sparsity: float,
    allocation="global",
    batches: Sequence | None = None,
    iterations: int | None = None,
    schedule: str = "exponential",
    control: str = "none",
    seed: int = 0,
) -> Masks:
    """Masks keyed by parameter name for every prunable weight; the model is never changed.

    ``control``: ``shuffle`` permutes each layer's mask, ``invert`` keeps the lowest scores instead
    of the highest (in every round), ``reinit`` keeps the mask and puts freshly initialized weights
    for the whole model in ``masks.weights`` — ``apply_masks(model, masks)`` loads them;
    ``corrupt_labels`` / ``corrupt_pixels`` score with corrupted batches (data-dependent methods).
    ``method="dense"`` is the unpruned reference: all-ones masks, sparsity 0 only.
    """
    s = check_sparsity(sparsity)
    batches = list(batches) if batches is not None else None
    input_shape = _input_shape(model, batches)
    _check_args(method, allocation, control, schedule, iterations, batches, input_shape)
    params = prunable_parameters(model)
    if not params:
        raise PaituneError("the model has no prunable (Conv/Linear) weights")
    if method == "dense":
        if s != 0.0:
            raise PaituneError(f"method 'dense' is the unpruned reference: use sparsity 0, got {s}")
        return Masks(
            {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()},
            meta={
                "method": "dense",
                "sparsity": 0.0,
                "allocation": "global",
                "control": "none",
                "iterations": 0,
                "schedule": schedule,
                "seed": int(seed),
                "target_densities": None,
                "control_applies": False,
            },
        )
    control_applies = control not in DATA_CONTROLS or method in DATA_METHODS
    if control in DATA_CONTROLS and control_applies:
        batches = corrupt_batches(batches, control, seed)
    shapes = layer_shapes(model)
    score_based = not isinstance(allocation, Mapping) and allocation in SCORE_SCHEMES
    targets = None if score_based else allocate(shapes, s, allocation)
    rounds = iterations if iterations is not None else DEFAULT_ITERATIONS.get(method, 1)
    scorer = _scorer(model, method, batches, input_shape, seed)

    masks: dict[str, torch.Tensor] | None = None
    for t in range(1, rounds + 1):
        scores = scorer(masks)
        if allocation == "lamp":
            scores = S.lamp_scores(scores)
        if control == "invert":
            scores = {name: -v for name, v in scores.items()}
        alive = None if (masks is None or method in REVIVING_METHODS) else masks
        if score_based:
            masks = select_global(scores, round_density(1.0 - s, t, rounds, schedule), alive)
        else:
            layer_targets = {n: round_density(d, t, rounds, schedule) for n, d in targets.items()}
            masks = select_per_layer(scores, layer_targets, alive)

    if control == "shuffle":
        masks = _shuffle(masks, seed)
    weights = _fresh_weights(model, seed) if control == "reinit" else None
    masks = {name: m.to(params[name].device) for name, m in masks.items()}
    meta = {
        "method": method,
        "sparsity": s,
        "allocation": dict(allocation) if isinstance(allocation, Mapping) else allocation,
        "control": control,
        "iterations": rounds,
        "schedule": schedule,
        "seed": int(seed),
        "target_densities": targets,
        "control_applies": control_applies,
    }
    return Masks(masks, weights=weights, meta=meta)
