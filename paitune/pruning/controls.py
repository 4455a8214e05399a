"""The control registry: a sanity-check control is one ``register_control(ControlSpec(...))``.

A control (Frankle et al. 2021; Su et al. 2020) changes one thing about how ``prune`` makes a mask,
and training it beside the unmodified mask (control ``none``) tells what the method's mask owes to
that thing. ``prune`` reads from the spec what to change: the scoring batches, each round's scores,
the finished mask, or the weights training starts from. The analysis reads from it what a loss of
accuracy means.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.copying import copy_module
from ..registry import Registry
from .reinit import LAYER_INITIALIZERS, initializer, redraw_in_place
from .seeds import derived_seed, generator

Scores = dict[str, torch.Tensor]
MaskDict = dict[str, torch.Tensor]
Batches = list[tuple[torch.Tensor, torch.Tensor]]
NO_CONTROL = "none"


@dataclass(frozen=True)
class ControlSpec:
    """What one control changes in ``prune``; every hook takes ``prune``'s seed for its draws.

    ``batches(batches, seed)``: the scoring batches the method scores with instead; such a control
    applies only to the methods that score with data (for the others the mask is the unmodified
    one and ``masks.meta["control_applies"]`` is False). ``scores(scores)``: each round's scores
    before selection; a method without scores (PHEW) refuses such a control. ``masks(masks,
    seed)``: the finished mask. ``weights(model, seed)``: new values of every parameter of the
    model, which ``apply_masks`` loads. ``meta(model)``: facts the control adds to ``masks.meta``
    (reinit: which initializer drew the weights). ``if_hurts`` / ``if_not``: what it means for the method
    when the control lowers accuracy / when it does not (the analysis' sanity table).
    """

    name: str
    batches: Callable[[Batches, int], Batches] | None = None
    scores: Callable[[Scores], Scores] | None = None
    masks: Callable[[MaskDict, int], MaskDict] | None = None
    weights: Callable[[nn.Module, int], dict[str, torch.Tensor]] | None = None
    meta: Callable[[nn.Module], dict] | None = None
    if_hurts: str = ""
    if_not: str = ""

    @property
    def changes_data(self) -> bool:
        """It corrupts the scoring data, so a method that scores without data is unaffected."""
        return self.batches is not None

    @property
    def needs_scores(self) -> bool:
        return self.scores is not None


_CONTROLS: Registry[ControlSpec] = Registry("control")


def register_control(spec: ControlSpec) -> ControlSpec:
    """Make ``spec.name`` a value of the trial option ``control`` (spaces, sweeps and the CLI)."""
    return _CONTROLS.add(spec.name, spec)


def control_names() -> tuple[str, ...]:
    return _CONTROLS.names()


def control_spec(name: str) -> ControlSpec:
    return _CONTROLS.get(name)


def shuffle_masks(masks: MaskDict, seed: int) -> MaskDict:
    """Same count per layer, positions permuted uniformly at random within the layer."""
    gen = generator(seed, "shuffle")
    out = {}
    for name, m in masks.items():
        flat = m.reshape(-1)
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        out[name] = flat[perm].reshape(m.shape)
    return out


def fresh_weights(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """All parameters re-drawn from the model's own initializer (``reset_parameters``), seeded.

    A model without a ``reset_parameters()`` of its own gets each layer's PyTorch default instead,
    with a UserWarning: that may not be the distribution the model was initialized with.
    Drawn on a CPU copy: the same seed gives the same weights on every device, and no CUDA RNG
    state is consumed. ``apply_masks`` moves them to the model's device.
    """
    if initializer(model) == LAYER_INITIALIZERS:
        warnings.warn(
            f"control 'reinit': {type(model).__name__} defines no reset_parameters(), so each layer's PyTorch "
            "default initializer draws the fresh weights, which may differ from the model's own initialization; "
            "define reset_parameters() on the model to re-draw with its initializer",
            UserWarning,
            stacklevel=4,  # the caller of prune (fresh_weights <- prune <- its grad-mode decorator <- caller)
        )
    scratch = copy_module(model).cpu()
    redraw_in_place(scratch, derived_seed(seed, "reinit"))
    return {name: p.detach().clone() for name, p in scratch.named_parameters()}


def reinit_meta(model: nn.Module) -> dict:
    return {"reinit_from": initializer(model)}


def invert_scores(scores: Scores) -> Scores:
    """The lowest scores kept instead of the highest."""
    return {name: -v for name, v in scores.items()}


def random_labels(batches: Sequence, seed: int) -> Batches:
    """Labels replaced by uniform random ones, drawn from the classes seen in the batches (Su et
    al.'s "random labels")."""
    gen = generator(seed, "corrupt")
    classes = int(max(int(y.max()) for _, y in batches)) + 1
    return [(x, torch.randint(0, classes, y.shape, generator=gen).to(y.device, y.dtype)) for x, y in batches]


def shuffled_pixels(batches: Sequence, seed: int) -> Batches:
    """Each image's elements permuted, independently per image."""
    gen = generator(seed, "corrupt")
    out = []
    for x, y in batches:
        flat = x.reshape(x.shape[0], -1)
        order = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1).to(x.device)
        out.append((torch.gather(flat, 1, order).reshape(x.shape), y))
    return out


def corrupt_batches(batches: Sequence, control: str, seed: int) -> Batches:
    """The scoring batches as a data control (corrupt_labels, corrupt_pixels, ...) changes them."""
    return control_spec(control).batches(batches, seed)


_DATA_HURTS = "the mask uses the data: scoring with {} hurts"
_DATA_NOT = "the data does not matter to the mask: scoring with {} does as well"

# The registration order is the order the names are listed in (help, docs, errors).
for _spec in (
    ControlSpec(NO_CONTROL),
    ControlSpec(
        "shuffle", masks=shuffle_masks,
        if_hurts="mask positions carry signal beyond the per-layer densities",
        if_not="per-layer densities carry the signal (positions within layers do not matter)",
    ),
    ControlSpec(
        "reinit", weights=fresh_weights, meta=reinit_meta,
        if_hurts="the mask is tied to the initial weights it was scored on",
        if_not="the mask works with fresh weights (initial values do not matter)",
    ),
    ControlSpec(
        "invert", scores=invert_scores,
        if_hurts="the scores rank weights meaningfully (inverting them hurts)",
        if_not="keeping the lowest scores does as well: the score order carries no signal",
    ),
    ControlSpec(
        "corrupt_labels", batches=random_labels,
        if_hurts=_DATA_HURTS.format("random labels"), if_not=_DATA_NOT.format("random labels"),
    ),
    ControlSpec(
        "corrupt_pixels", batches=shuffled_pixels,
        if_hurts=_DATA_HURTS.format("shuffled pixels"), if_not=_DATA_NOT.format("shuffled pixels"),
    ),
):  # fmt: skip
    register_control(_spec)

CONTROLS: tuple[str, ...] = control_names()  # the built-in controls
