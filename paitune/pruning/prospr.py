"""ProsPr (Alizadeh et al. 2022): the mask's meta-gradient through a few SGD steps.

On a train-mode scratch copy, a mask variable m (ones, or the current mask in later rounds)
multiplies the prunable weights; the net takes ``inner_steps`` SGD steps (heavy-ball momentum, no
weight decay, dampening or Nesterov) on batches[0], and the score is |dL(theta_K)/dm| with L the
mean cross-entropy of that same batch. "full" meta-gradients differentiate through the steps;
"first_order" treats each step's gradient as a constant. With 0 steps this is SNIP's score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..config.options import Range
from .registry import MethodSpec, ScoringInputs, method_option
from .scores import ScoringCopy

META_GRADS = ("full", "first_order")  # differentiate through the steps, or treat their gradients as constants


def prospr_scores(scratch: ScoringCopy, masks, batch, options) -> dict[str, torch.Tensor]:
    model = scratch.model
    model.train()  # batch-norm batch statistics in every step
    x, y = (t.to(scratch.device) for t in batch)
    params = {name: p.detach() for name, p in model.named_parameters()}
    prunable = list(scratch.params)
    m = {
        name: (
            torch.ones_like(scratch.original[name])
            if masks is None
            else masks[name].to(scratch.device, scratch.original[name].dtype)
        ).requires_grad_(True)
        for name in prunable
    }
    full = options["meta_grads"] == "full"
    # theta_0: every parameter; the prunable ones as w * m, so m enters every step.
    theta = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    for name in prunable:
        theta[name] = scratch.original[name] * m[name]
    names = list(theta)
    velocity = None
    for _ in range(options["inner_steps"]):
        loss = F.cross_entropy(functional_call(model, theta, (x,)), y)
        grads = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=full, allow_unused=True)
        grads = [torch.zeros_like(theta[n]) if g is None else g for n, g in zip(names, grads)]
        if velocity is None:
            velocity = grads
        else:
            velocity = [options["inner_momentum"] * v + g for v, g in zip(velocity, grads)]
        theta = {n: theta[n] - options["inner_lr"] * v for n, v in zip(names, velocity)}
    loss = F.cross_entropy(functional_call(model, theta, (x,)), y)
    grads = torch.autograd.grad(loss, [m[n] for n in prunable], allow_unused=True)
    return {
        name: (torch.zeros_like(m[name]) if g is None else g).detach().abs().double().cpu()
        for name, g in zip(prunable, grads)
    }


def _make_scorer(inputs: ScoringInputs):
    scratch = ScoringCopy(inputs.model)
    batch = inputs.batches[0]  # the official code reuses one batch (new_data_in_inner=False)
    return lambda masks: prospr_scores(scratch, masks, batch, inputs.options)


SPEC = MethodSpec(
    "prospr",
    make_scorer=_make_scorer,
    needs_data=True,
    iterative=True,  # one round by default; the spec allows more (REFERENCE-frontier.md)
    options=(
        method_option("inner_steps", "int", 3, "SGD steps the meta-gradient differentiates through", range=Range(0)),
        method_option("inner_lr", "float", 0.1, "learning rate of those steps", range=Range(0.0, low_open=True)),
        method_option("inner_momentum", "float", 0.0, "momentum of those steps", range=Range(0.0)),
        method_option(
            "meta_grads", "name", "full", "full or first_order meta-gradients", choices=f"{__name__}:META_GRADS"
        ),
    ),
)
