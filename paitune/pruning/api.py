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
from . import builtin, ntk_sap, phew, prospr, px
from . import scores as S
from .allocation import SCORE_SCHEMES, allocate, check_sparsity
from .layers import layer_shapes, prunable_parameters
from .masks import Masks
from .registry import MethodSpec, ScoringInputs, get_method, register, registered
from .reinit import redraw_in_place
from .seeds import derived_seed, generator
from .selection import select_global, select_per_layer

# The registration order is the order of METHODS.
for _spec in (*builtin.SPECS, prospr.SPEC, ntk_sap.SPEC, phew.SPEC, px.SPEC):
    register(_spec)

METHODS = tuple(spec.name for spec in registered())
DATA_METHODS = tuple(spec.name for spec in registered() if spec.needs_data)  # need scoring batches
# Sanity checks (Frankle et al. 2021; Su et al. 2020). The corrupt_* controls score with corrupted
# data (random labels, or each image's pixels shuffled) and only apply to the data-dependent methods;
# for the others the mask is the unmodified one and ``masks.meta["control_applies"]`` is False.
CONTROLS = ("none", "shuffle", "reinit", "invert", "corrupt_labels", "corrupt_pixels")
DATA_CONTROLS = ("corrupt_labels", "corrupt_pixels")
SCHEDULES = ("exponential", "linear")
# Rounds when the caller passes no ``iterations``.
DEFAULT_ITERATIONS = {spec.name: spec.default_iterations for spec in registered() if spec.default_iterations}
REVIVING_METHODS = tuple(spec.name for spec in registered() if spec.revives)


def round_density(final: float, t: int, rounds: int, schedule: str) -> float:
    """Target density after round t of T."""
    if schedule == "exponential":
        return final ** (t / rounds)
    return 1.0 - (1.0 - final) * t / rounds


def _check_args(spec: MethodSpec, control, schedule, iterations, batches, input_shape):
    if control not in CONTROLS:
        raise unknown_choice("control", control, CONTROLS)
    if schedule not in SCHEDULES:
        raise unknown_choice("schedule", schedule, SCHEDULES)
    if iterations is not None and (not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1):
        raise PaituneError(f"iterations must be a positive integer, got {iterations!r}")
    if spec.needs_data and not batches:
        raise PaituneError(f"method {spec.name!r} scores with data: pass batches=[(x, y), ...]")
    if spec.needs_input_shape and input_shape is None:
        raise PaituneError(f"{spec.name} needs the input shape: pass batches or set model.input_shape")


def _check_mask_builder(spec: MethodSpec, allocation, control, iterations) -> None:
    """A method that builds its mask without scores: one global mask, nothing to invert, one round."""
    if isinstance(allocation, Mapping) or allocation != "global":
        shown = "an explicit map" if isinstance(allocation, Mapping) else repr(allocation)
        raise PaituneError(f"method {spec.name!r} builds one global mask: use allocation 'global', not {shown}")
    if control == "invert":
        raise PaituneError(f"method {spec.name!r} has no scores to invert: use control none, shuffle or reinit")
    if iterations not in (None, 1):
        raise PaituneError(f"method {spec.name!r} prunes in one step: leave iterations unset (or 1)")


def check_choices(method: str, *, allocation="global", control="none", iterations=None, method_options=None) -> dict:
    """The rules ``prune`` applies to a method's choices, without a model: the resolved options.

    A planner calls it on every config before anything runs; ``prune`` calls it too.
    """
    spec = get_method(method)
    if control not in CONTROLS:
        raise unknown_choice("control", control, CONTROLS)
    options = spec.resolve_options(method_options)
    if spec.build_mask is not None:
        _check_mask_builder(spec, allocation, control, iterations)
    return options


def _input_shape(model: nn.Module, batches) -> tuple[int, ...] | None:
    if batches:
        return tuple(batches[0][0].shape[1:])
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else None


def _fresh_weights(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """All parameters re-drawn from the model's own initializer (``reset_parameters``), seeded.

    Drawn on a CPU copy: the same seed gives the same weights on every device, and no CUDA RNG
    state is consumed. ``apply_masks`` moves them to the model's device.
    """
    scratch = copy_module(model).cpu()
    redraw_in_place(scratch, derived_seed(seed, "reinit"))
    return {name: p.detach().clone() for name, p in scratch.named_parameters()}


def _shuffle(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Same count per layer, positions permuted uniformly at random within the layer."""
    gen = generator(seed, "shuffle")
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
    gen = generator(seed, "corrupt")
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
    method_options: Mapping | None = None,
) -> Masks:
    """Masks keyed by parameter name for every prunable weight; the model is never changed.

    ``control``: ``shuffle`` permutes each layer's mask, ``invert`` keeps the lowest scores instead
    of the highest (in every round), ``reinit`` keeps the mask and puts freshly initialized weights
    for the whole model in ``masks.weights`` — ``apply_masks(model, masks)`` loads them;
    ``corrupt_labels`` / ``corrupt_pixels`` score with corrupted batches (data-dependent methods).
    ``method="dense"`` is the unpruned reference: all-ones masks, sparsity 0 only.
    ``method_options``: the method's own settings (e.g. ``{"inner_steps": 3}`` for prospr); a key the
    method does not take is a PaituneError naming the ones it does.
    """
    s = check_sparsity(sparsity)
    batches = list(batches) if batches is not None else None
    input_shape = _input_shape(model, batches)
    spec = get_method(method)
    _check_args(spec, control, schedule, iterations, batches, input_shape)
    options = check_choices(
        method, allocation=allocation, control=control, iterations=iterations, method_options=method_options
    )
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
    control_applies = control not in DATA_CONTROLS or spec.needs_data
    if control in DATA_CONTROLS and control_applies:
        batches = corrupt_batches(batches, control, seed)
    shapes = layer_shapes(model)
    score_based = not isinstance(allocation, Mapping) and allocation in SCORE_SCHEMES
    targets = None if score_based else allocate(shapes, s, allocation)
    rounds = iterations if iterations is not None else (spec.default_iterations or 1)
    inputs = ScoringInputs(model, batches, input_shape, int(seed), options)
    if spec.build_mask is not None:
        masks = spec.build_mask(inputs, 1.0 - s)
    else:
        masks = _score_and_select(spec, inputs, s, allocation, targets, score_based, rounds, schedule, control)

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
    if options:
        meta["method_options"] = options
    return Masks(masks, weights=weights, meta=meta)


def _score_and_select(spec, inputs, s, allocation, targets, score_based, rounds, schedule, control):
    """The rounds of a scoring method: rescore the masked net, keep each round's target count."""
    scorer = spec.make_scorer(inputs)
    masks: dict[str, torch.Tensor] | None = None
    for t in range(1, rounds + 1):
        scores = scorer(masks)
        if allocation == "lamp":
            scores = S.lamp_scores(scores)
        if control == "invert":
            scores = {name: -v for name, v in scores.items()}
        alive = None if (masks is None or spec.revives) else masks
        if score_based:
            masks = select_global(scores, round_density(1.0 - s, t, rounds, schedule), alive)
        else:
            layer_targets = {n: round_density(d, t, rounds, schedule) for n, d in targets.items()}
            masks = select_per_layer(scores, layer_targets, alive)
    return masks
