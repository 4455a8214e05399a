"""Layerwise allocation: the registry of schemes, and the fixed-ratio rules of REFERENCE.md.

An allocation is one ``register_allocation(AllocationSpec(...))``. A spec with ``densities`` fixes
every layer's density before any scoring (uniform, ERK, ...): ``allocate(shapes, sparsity, name)``
calls it, and each layer keeps its own top scores. A spec without it ranks the method's scores
across layers (``global``; ``lamp`` after LAMP-normalizing them), so its densities emerge from the
scores and ``prune`` handles it; ``allocate`` names such a scheme in its error so callers learn
where it lives. Besides the names, an explicit {layer: density} map is an allocation.

Every rule returns densities in [0, 1] whose parameter-weighted mean is 1 - sparsity (up to the
rounding to whole weights that ``prune`` does per layer), with the dict in the order of ``shapes``
(input to output).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch

from ..errors import PaituneError
from ..registry import Registry
from .layers import is_conv_shape, numel
from .scores import lamp_scores

Shapes = dict[str, tuple[int, ...]]
Scores = dict[str, torch.Tensor]
GLOBAL = "global"  # the method's own scores ranked across layers: the default allocation


@dataclass(frozen=True)
class AllocationSpec:
    """One layerwise allocation by name.

    ``densities(shapes, sparsity)``: {layer: density} for every layer of ``shapes``, in its order;
    a PaituneError (one line) when the rule cannot meet the sparsity. Without it the allocation
    ranks scores across layers, after ``normalize`` (each round's scores -> scores comparable across
    layers) when given. ``normalize_candidates``: ``normalize`` also takes ``candidates=`` (the
    weights an iterative round may keep, {layer: bool mask}; None in the first round and for
    methods that revive) and normalizes over those alone. ``normalize_magnitudes``: the same ranking
    for the non-negative magnitudes IMP and edge-popup rank (default: ``normalize``).
    """

    name: str
    densities: Callable[[Shapes, float], dict[str, float]] | None = None
    normalize: Callable[[Scores], Scores] | None = None
    normalize_magnitudes: Callable[[Scores], Scores] | None = None
    normalize_candidates: bool = False

    @property
    def ranks_scores(self) -> bool:
        """The densities emerge from scores ranked across layers (no rule fixes them first)."""
        return self.densities is None

    def normalize_round(self, scores: Scores, candidates: dict[str, torch.Tensor] | None) -> Scores:
        """One round's scores made comparable across layers (``scores`` itself without ``normalize``)."""
        if self.normalize is None:
            return scores
        if self.normalize_candidates:
            return self.normalize(scores, candidates=candidates)
        return self.normalize(scores)

    def magnitude_normalizer(self) -> Callable[[Scores], Scores] | None:
        return self.normalize_magnitudes or self.normalize


_ALLOCATIONS: Registry[AllocationSpec] = Registry("allocation")


def register_allocation(spec: AllocationSpec) -> AllocationSpec:
    """Make ``spec.name`` a value of the trial option ``allocation`` (spaces, sweeps and the CLI)."""
    if spec.densities is not None and (spec.normalize or spec.normalize_magnitudes) is not None:
        raise ValueError(f"allocation {spec.name!r}: densities fix the layers, so there are no scores to normalize")
    if spec.normalize_candidates and spec.normalize is None:
        raise ValueError(f"allocation {spec.name!r}: normalize_candidates needs a normalize to pass them to")
    return _ALLOCATIONS.add(spec.name, spec)


def allocation_names() -> tuple[str, ...]:
    return _ALLOCATIONS.names()


def allocation_spec(name: str) -> AllocationSpec:
    return _ALLOCATIONS.get(name, also=("{layer: density} map",))


def ranks_scores(allocation) -> bool:
    """An allocation (a name or an explicit map) whose densities emerge from ranked scores."""
    return not isinstance(allocation, Mapping) and allocation_spec(allocation).ranks_scores


# Gale et al. (2019): the last layer is never pruned beyond 80% under uniform_plus.
UNIFORM_PLUS_LAST_LAYER_MIN_DENSITY = 0.2
# Su et al. (2020): linear layers keep 30% under smart_ratio (their code's default).
SMART_RATIO_LINEAR_DENSITY = 0.3
# How far an explicit map's own sparsity (1 - its parameter-weighted mean density) may be from the
# sparsity asked: a map written by hand to a few decimals still names its level.
EXPLICIT_SPARSITY_TOLERANCE = 1e-3


def check_sparsity(sparsity: float) -> float:
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise PaituneError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not (0.0 <= s < 1.0) or math.isnan(s):
        raise PaituneError(f"sparsity must be in [0, 1) (the fraction of weights removed), got {s}")
    return s


def allocate(shapes: Mapping[str, tuple], sparsity: float, scheme) -> dict[str, float]:
    """Per-layer densities for ``sparsity`` under ``scheme`` (a name or an explicit {layer: density})."""
    s = check_sparsity(sparsity)
    shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    if not shapes:
        raise PaituneError("the model has no prunable (Conv/Linear) weights")
    if isinstance(scheme, Mapping):
        return explicit(shapes, scheme, sparsity=s)
    spec = allocation_spec(scheme)
    if spec.ranks_scores:
        raise PaituneError(
            f"allocation {scheme!r} ranks a method's scores across layers: use prune(..., allocation={scheme!r})"
        )
    densities = spec.densities(shapes, s)
    # A plug-in's rule is held to what prune relies on: every layer once, each density in [0, 1].
    if set(densities) != set(shapes) or not all(0.0 <= d <= 1.0 for d in densities.values()):
        raise PaituneError(
            f"allocation {scheme!r} must give every prunable layer a density in [0, 1]; it gave {densities}"
        )
    return {name: densities[name] for name in shapes}


def explicit(
    shapes: dict[str, tuple], densities: Mapping[str, float], sparsity: float | None = None
) -> dict[str, float]:
    """An explicit per-layer map; every prunable layer must be named, each density in [0, 1].

    With ``sparsity``, the map must remove that fraction of the weights (within
    EXPLICIT_SPARSITY_TOLERANCE): a trial is filed, compared and reported under its sparsity, so a
    map that keeps another fraction would put the same mask under every sparsity of a sweep.
    """
    missing = [n for n in shapes if n not in densities]
    extra = [n for n in densities if n not in shapes]
    if missing or extra:
        raise PaituneError(
            f"explicit allocation must name every prunable layer exactly: missing {missing}, unknown {extra}"
        )
    out = {}
    for name in shapes:
        d = float(densities[name])
        if not 0.0 <= d <= 1.0 or math.isnan(d):
            raise PaituneError(f"explicit allocation: density of {name} must be in [0, 1], got {d}")
        out[name] = d
    if sparsity is not None:
        total = sum(numel(shape) for shape in shapes.values())
        own = 1.0 - sum(out[name] * numel(shape) for name, shape in shapes.items()) / total
        if abs(own - sparsity) > EXPLICIT_SPARSITY_TOLERANCE:
            raise PaituneError(
                f"explicit allocation removes {own:.6g} of the weights, not the sparsity {sparsity:g} asked: "
                f"ask for sparsity {own:.6g} or scale the map's densities"
            )
    return out


def uniform(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    return {name: 1.0 - sparsity for name in shapes}


def _fill_free_layers(sizes: dict[str, int], fixed: dict[str, float], budget: float, what: str) -> float:
    """The common density of the layers not in ``fixed`` so that all kept weights sum to ``budget``.

    With no layer left free, the fixed layers must meet the budget themselves (up to float error).
    """
    free = sum(n for name, n in sizes.items() if name not in fixed)
    kept = sum(fixed[name] * sizes[name] for name in fixed)
    left = budget - kept
    if free == 0:
        if abs(left) > 1e-9 * sum(sizes.values()):
            fixed_size = sum(sizes[name] for name in fixed)
            raise PaituneError(
                f"{what} cannot meet this sparsity: its fixed layers ({', '.join(fixed)}) keep density "
                f"{kept / fixed_size:.4g} and no other layer is left to absorb the rest; use a sparsity "
                f"of at most {1 - kept / sum(sizes.values()):.4g} or another allocation"
            )
        return 0.0
    d = left / free
    if d < 0:
        raise PaituneError(
            f"{what} cannot meet this sparsity: its fixed layers ({', '.join(fixed)}) keep more than it allows "
            f"(the remaining layers would need density {d:.4g}); use a sparsity of at most "
            f"{1 - kept / sum(sizes.values()):.4g} or another allocation"
        )
    if d > 1:
        raise PaituneError(f"{what} cannot meet this sparsity: the remaining layers would need density {d:.4g}")
    return d


def uniform_plus(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    """Gale et al.: first conv layer dense, last layer at most 80% sparse, the rest uniform."""
    sizes = {name: numel(shape) for name, shape in shapes.items()}
    budget = (1.0 - sparsity) * sum(sizes.values())
    names = list(shapes)
    fixed: dict[str, float] = {}
    first_conv = next((n for n in names if is_conv_shape(shapes[n])), None)
    if first_conv is not None:
        fixed[first_conv] = 1.0
    last = names[-1]
    rest = _fill_free_layers(sizes, fixed, budget, "uniform_plus")
    if last not in fixed and rest < UNIFORM_PLUS_LAST_LAYER_MIN_DENSITY:
        fixed[last] = UNIFORM_PLUS_LAST_LAYER_MIN_DENSITY
        rest = _fill_free_layers(sizes, fixed, budget, "uniform_plus")
    return {name: fixed.get(name, rest) for name in names}


def _raw_density(shape: tuple, kernel: bool) -> float:
    if kernel:  # ERK: (sum of the weight's dims) / (product of its dims)
        return sum(shape) / numel(shape)
    n_out, n_in = shape[0], shape[1]  # ER: (n_in + n_out) / (n_in * n_out), kernel size ignored
    return (n_in + n_out) / (n_in * n_out)


def _scale_to_budget(sizes: dict[str, int], raw: dict[str, float], budget: float) -> dict[str, float]:
    """density_l = eps * raw_l meeting the budget, with layers that would exceed 1 made dense.

    As in RigL's code: while some layer's density exceeds 1, every layer tied at the largest raw
    value among the free layers becomes dense at once, and eps is solved again for the rest.
    """
    dense: set[str] = set()
    while True:
        free = [n for n in sizes if n not in dense]
        left = budget - sum(sizes[n] for n in dense)
        weighted = sum(raw[n] * sizes[n] for n in free)
        if not free or weighted <= 0:
            return {n: 1.0 if n in dense else 0.0 for n in sizes}
        eps = left / weighted
        if all(eps * raw[n] <= 1.0 for n in free):
            return {n: 1.0 if n in dense else eps * raw[n] for n in sizes}
        top = max(raw[n] for n in free)
        dense.update(n for n in free if raw[n] == top)


def erdos_renyi(shapes: dict[str, tuple], sparsity: float, *, kernel: bool) -> dict[str, float]:
    """ER (Mocanu et al.) or ERK (Evci et al.): density proportional to a layer's raw connectivity."""
    sizes = {name: numel(shape) for name, shape in shapes.items()}
    raw = {name: _raw_density(shape, kernel) for name, shape in shapes.items()}
    return _scale_to_budget(sizes, raw, (1.0 - sparsity) * sum(sizes.values()))


def igq(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    """Vysogorets & Kempe (2023): density_l = 1 / (1 + F * N_l), F bisected to meet the sparsity."""
    sizes = {name: numel(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    target = (1.0 - sparsity) * total
    if sparsity == 0:
        return {name: 1.0 for name in sizes}

    def kept(f: float) -> float:
        return sum(n / (1.0 + f * n) for n in sizes.values())

    # kept(F) falls monotonically from total (F=0) to 0 (F->inf): bisect on log F.
    lo, hi = 1e-30, 1.0
    while kept(hi) > target:
        hi *= 2.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if kept(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-14:
            break
    f = math.sqrt(lo * hi)
    return {name: 1.0 / (1.0 + f * n) for name, n in sizes.items()}


def _scaled(sizes: dict[str, int], raw: dict[str, float], budget: float) -> dict[str, float]:
    """density_l = k * raw_l with one k meeting the budget, before any cap."""
    weighted = sum(raw[n] * sizes[n] for n in sizes)
    return {n: budget * raw[n] / weighted for n in sizes}


def _carry_excess_forward(sizes: dict[str, int], densities: dict[str, float]) -> dict[str, float]:
    """Su et al.'s cap: a density above 1 becomes 1, and its excess weights fill the following
    layers in order, each up to dense; a layer the excess does not reach keeps its density.

    Unlike ERK's re-solved common scale, the layers after the first one with room are unchanged
    (the authors' ``SmartRatio``, "the easy modification"). Excess past the last layer is dropped:
    the caller decides where it goes.
    """
    out, excess = {}, 0.0
    for name, density in densities.items():
        room = (1.0 - density) * sizes[name]
        if room <= excess:
            excess -= room
            out[name] = 1.0
        else:
            out[name] = min(1.0, density + excess / sizes[name])
            excess = 0.0
    return out


def smart_ratio(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    """Su et al. (2020): layer l of L keeps a ratio proportional to (L-l+1)^2 + (L-l+1).

    As in the authors' code, L counts all prunable layers, linear layers keep a fixed 30%, and the
    conv layers' ratios are scaled to meet the sparsity. A ratio above 1 is capped and its excess
    fills the next conv layers in order, each up to dense (``_carry_excess_forward``); excess left
    when every conv layer is dense goes to the linear layers, so the sparsity is still met. A model
    without conv layers (an MLP) applies the quadratic rule, with the same cap, to its linear
    layers instead, since a fixed 30% could not meet most sparsities there.
    """
    names = list(shapes)
    sizes = {name: numel(shapes[name]) for name in names}
    count = len(names)
    quadratic = {name: float((count - i) ** 2 + (count - i)) for i, name in enumerate(names)}
    convs = [n for n in names if is_conv_shape(shapes[n])]
    budget = (1.0 - sparsity) * sum(sizes.values())
    if not convs:
        return _carry_excess_forward(sizes, _scaled(sizes, quadratic, budget))
    linear = {n: SMART_RATIO_LINEAR_DENSITY for n in names if n not in convs}
    conv_budget = budget - sum(SMART_RATIO_LINEAR_DENSITY * sizes[n] for n in linear)
    if conv_budget < 0:
        linear_share = sum(SMART_RATIO_LINEAR_DENSITY * sizes[n] for n in linear) / sum(sizes.values())
        raise PaituneError(
            f"smart_ratio cannot meet sparsity {sparsity}: its linear layers alone keep "
            f"{SMART_RATIO_LINEAR_DENSITY:.0%}; use a sparsity of at most {1 - linear_share:.4g} or another allocation"
        )
    conv_sizes = {n: sizes[n] for n in convs}
    conv_densities = _carry_excess_forward(conv_sizes, _scaled(conv_sizes, quadratic, conv_budget))
    # At low sparsity the convs may all be dense with budget to spare: it goes to the linear layers.
    spare = conv_budget - sum(conv_densities[n] * sizes[n] for n in convs)
    if spare > 0 and linear:
        extra = spare / sum(sizes[n] for n in linear)
        linear = {n: min(1.0, d + extra) for n, d in linear.items()}
    return {name: conv_densities.get(name, linear.get(name)) for name in names}


# The registration order is the order the names are listed in (help, docs, errors).
for _spec in (
    AllocationSpec(GLOBAL),
    # Lee et al. (2021). prune ranks ties to the lower flat index, normalizes over each round's
    # candidates (and shifts signed scores); IMP and edge-popup break ties with torch.sort: each
    # method's masks are reproducible only with its own order.
    AllocationSpec(
        "lamp",
        normalize=lamp_scores,
        normalize_magnitudes=partial(lamp_scores, stable=False, empty_layer=0.0),
        normalize_candidates=True,
    ),
    AllocationSpec("uniform", uniform),
    AllocationSpec("uniform_plus", uniform_plus),
    AllocationSpec("er", lambda shapes, sparsity: erdos_renyi(shapes, sparsity, kernel=False)),
    AllocationSpec("erk", lambda shapes, sparsity: erdos_renyi(shapes, sparsity, kernel=True)),
    AllocationSpec("igq", igq),
    AllocationSpec("smart_ratio", smart_ratio),
):
    register_allocation(_spec)

ALLOCATIONS: tuple[str, ...] = allocation_names()  # the built-in allocations
