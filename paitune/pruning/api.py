"""``prune``: one PaI method at one sparsity under one layerwise allocation, with a control.

Method and allocation are orthogonal (DESIGN.md): under an allocation that ranks scores (``global``;
``lamp`` after normalizing them) the method's scores are ranked across layers and the per-layer
densities emerge; under any other allocation the densities are fixed first (``allocate``) and each
layer keeps its own top scores. A control (``paitune.pruning.controls``) changes the batches, the
scores, the finished mask or the weights, as its registration says. Iterative methods prune over
``iterations`` rounds, round t reaching density_t = density ** (t / T) (exponential schedule, per
layer for fixed allocations) or 1 - (1 - density) * t / T (linear), each round rescoring the masked
net. Only FORCE may revive a weight pruned in an earlier round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import PaituneError, unknown_choice
from . import builtin, ntk_sap, phew, prospr, px, seeds
from .allocation import GLOBAL, AllocationSpec, allocate, allocation_spec, check_sparsity
from .controls import NO_CONTROL, ControlSpec, control_names, control_spec
from .grad_mode import autograd_tensor, gradients_on
from .layers import check_plain_weights, check_prunable_layers, layer_shapes, prunable_parameters
from .masks import Masks
from .registry import MethodSpec, ScoringInputs, get_method, register_method, registered
from .selection import select_global, select_per_layer

# The registration order is the order of METHODS.
for _spec in (*builtin.SPECS, prospr.SPEC, ntk_sap.SPEC, phew.SPEC, px.SPEC):
    register_method(_spec)

METHODS = tuple(spec.name for spec in registered())
DATA_METHODS = tuple(spec.name for spec in registered() if spec.needs_data)  # need scoring batches
SCHEDULES = ("exponential", "linear")
DENSE = "dense"  # the unpruned reference: all-ones masks, sparsity 0 only
# Rounds when the caller passes no ``iterations``.
DEFAULT_ITERATIONS = {spec.name: spec.default_iterations for spec in registered() if spec.default_iterations}
REVIVING_METHODS = tuple(spec.name for spec in registered() if spec.revives)


def round_density(final: float, t: int, rounds: int, schedule: str) -> float:
    """Target density after round t of T."""
    if schedule == "exponential":
        return final ** (t / rounds)
    return 1.0 - (1.0 - final) * t / rounds


def _check_args(spec: MethodSpec, control, schedule, iterations, batches, input_shape):
    control_spec(control)
    if schedule not in SCHEDULES:
        raise unknown_choice("schedule", schedule, SCHEDULES)
    if iterations is not None and (not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1):
        raise PaituneError(f"iterations must be a positive integer, got {iterations!r}")
    if spec.needs_data and not batches:
        raise PaituneError(f"method {spec.name!r} scores with data: pass batches=[(x, y), ...]")
    if spec.needs_input_shape and input_shape is None:
        raise PaituneError(f"{spec.name} needs the input shape: pass batches or set model.input_shape")


def _check_mask_builder(spec: MethodSpec, allocation, control: ControlSpec, iterations) -> None:
    """A method that builds its mask without scores: one global mask, no scores to change, one round."""
    if isinstance(allocation, Mapping) or allocation != GLOBAL:
        shown = "an explicit map" if isinstance(allocation, Mapping) else repr(allocation)
        raise PaituneError(f"method {spec.name!r} builds one global mask: use allocation {GLOBAL!r}, not {shown}")
    if control.needs_scores:
        fitting = ", ".join(
            name
            for name in control_names()
            if not control_spec(name).needs_scores and not (control_spec(name).changes_data and not spec.needs_data)
        )
        raise PaituneError(
            f"method {spec.name!r} has no scores for control {control.name!r} to change: use control {fitting}"
        )
    if iterations not in (None, 1):
        raise PaituneError(f"method {spec.name!r} prunes in one step: leave iterations unset (or 1)")


def _check_dense(allocation, control, iterations, sparsity) -> None:
    """The unpruned reference has nothing to allocate, control or iterate: a value that would change
    a pruned trial must not be silently ignored and recorded as the reference's."""
    refused = None
    if sparsity is not None and float(sparsity) != 0.0:
        refused = f"use sparsity 0, got {sparsity}"
    elif isinstance(allocation, Mapping) or allocation != GLOBAL:
        shown = "an explicit map" if isinstance(allocation, Mapping) else repr(allocation)
        refused = f"use allocation {GLOBAL!r}, got {shown}"
    elif control != NO_CONTROL:
        refused = f"use control {NO_CONTROL!r}, got {control!r}"
    elif iterations is not None:
        refused = f"leave iterations unset, got {iterations!r}"
    if refused:
        raise PaituneError(f"method {DENSE!r} is the unpruned reference: {refused}")


def check_choices(
    method: str, *, allocation=GLOBAL, control=NO_CONTROL, iterations=None, method_options=None, sparsity=None
) -> dict:
    """The rules ``prune`` applies to a method's choices, without a model: the resolved options.

    A planner calls it on every config before anything runs; ``prune`` calls it too.
    """
    spec = get_method(method)
    control = control_spec(control)
    if method == DENSE:
        _check_dense(allocation, control.name, iterations, sparsity)
    options = spec.resolve_options(method_options)
    if spec.build_mask is not None:
        _check_mask_builder(spec, allocation, control, iterations)
    return options


def _input_shape(model: nn.Module, batches) -> tuple[int, ...] | None:
    if batches:
        return tuple(batches[0][0].shape[1:])
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else None


@gradients_on()  # scoring differentiates: a caller's no_grad() or inference_mode() must not switch that off
def prune(
    model: nn.Module,
    method: str,
    *,
    sparsity: float,
    allocation=GLOBAL,
    batches: Sequence | None = None,
    iterations: int | None = None,
    schedule: str = "exponential",
    control: str = NO_CONTROL,
    seed: int = 0,
    method_options: Mapping | None = None,
) -> Masks:
    """Masks keyed by parameter name for every prunable weight; the model is never changed.

    ``control``: a registered control; ``shuffle`` permutes each layer's mask, ``invert`` keeps the lowest scores instead
    of the highest (in every round), ``reinit`` keeps the mask and puts freshly initialized weights
    for the whole model in ``masks.weights`` — ``apply_masks(model, masks)`` loads them;
    ``corrupt_labels`` / ``corrupt_pixels`` score with corrupted batches (data-dependent methods).
    ``method="dense"`` is the unpruned reference: all-ones masks, sparsity 0 only.
    ``method_options``: the method's own settings (e.g. ``{"inner_steps": 3}`` for prospr); a key the
    method does not take is a PaituneError naming the ones it does.

    Scoring runs with autograd on, also when the caller is under ``torch.no_grad()`` or
    ``torch.inference_mode()``; the masks are ordinary tensors either way.
    """
    s = check_sparsity(sparsity)
    check_prunable_layers(model)
    check_plain_weights(model)
    if batches is not None:  # a batch made under torch.inference_mode cannot be saved for backward
        batches = [tuple(autograd_tensor(t) if isinstance(t, torch.Tensor) else t for t in b) for b in batches]
    input_shape = _input_shape(model, batches)
    spec = get_method(method)
    _check_args(spec, control, schedule, iterations, batches, input_shape)
    options = check_choices(
        method, allocation=allocation, control=control, iterations=iterations, method_options=method_options,
        sparsity=s,
    )  # fmt: skip
    params = prunable_parameters(model)
    if not params:
        raise PaituneError("the model has no prunable (Conv/Linear) weights")
    if method == DENSE:
        return Masks(
            {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()},
            meta={
                "method": "dense",
                "sparsity": 0.0,
                "allocation": GLOBAL,
                "control": NO_CONTROL,
                "iterations": 0,
                "schedule": schedule,
                "seed": int(seed),
                "target_densities": None,
                "control_applies": False,
            },
        )
    treatment = control_spec(control)
    control_applies = not treatment.changes_data or spec.needs_data
    if treatment.changes_data and control_applies:
        batches = treatment.batches(batches, seed)
    shapes = layer_shapes(model)
    ranking = None if isinstance(allocation, Mapping) else allocation_spec(allocation)
    targets = None if ranking is not None and ranking.ranks_scores else allocate(shapes, s, allocation)
    rounds = iterations if iterations is not None else (spec.default_iterations or 1)
    inputs = ScoringInputs(model, batches, input_shape, int(seed), options)
    with seeds.seeded_global_rng(seed, next(iter(params.values())).device):
        if spec.build_mask is not None:
            masks = spec.build_mask(inputs, 1.0 - s)
        else:
            masks = _score_and_select(spec, inputs, s, ranking, targets, rounds, schedule, treatment)

    if treatment.masks is not None:
        masks = treatment.masks(masks, seed)
    weights = treatment.weights(model, seed) if treatment.weights is not None else None
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
    if treatment.meta is not None:
        meta.update(treatment.meta(model))
    return Masks(masks, weights=weights, meta=meta)


def _score_and_select(spec, inputs, s, ranking: AllocationSpec | None, targets, rounds, schedule, treatment):
    """The rounds of a scoring method: rescore the masked net, keep each round's target count.

    ``ranking``: the allocation when it ranks scores across layers, else ``targets`` holds the
    per-layer densities.
    """
    scorer = spec.make_scorer(inputs)
    masks: dict[str, torch.Tensor] | None = None
    for t in range(1, rounds + 1):
        scores = scorer(masks)
        alive = None if (masks is None or spec.revives) else masks
        if targets is None:
            scores = ranking.normalize_round(scores, alive)
        if treatment.scores is not None:
            scores = treatment.scores(scores)
        if targets is None:
            masks = select_global(scores, round_density(1.0 - s, t, rounds, schedule), alive)
        else:
            layer_targets = {n: round_density(d, t, rounds, schedule) for n, d in targets.items()}
            masks = select_per_layer(scores, layer_targets, alive)
    return masks
