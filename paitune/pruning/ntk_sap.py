"""NTK-SAP (Wang et al. 2023): data-free saliency of the NTK spectrum, from re-drawn weights.

Each round, for each of ``resamples`` draws and each scoring batch (only its shape is read): a
scratch copy with every parameter re-drawn by the model's own initializer and fresh batch-norm
statistics; x ~ N(0, 1); one train-mode pass without gradient so the running statistics (momentum
1) become x's batch statistics; then in eval mode z = f(x; theta * m) and z' with the prunable
weights perturbed by ``epsilon`` * N(0, 1), all else shared. The score is |sum of dJ/dm| over the
draws, J = sum over samples of ||z - z'||^2, for the weights still alive. Weight-agnostic: a
function of the architecture, the mask so far, the batch shapes and the seed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..config.options import Range
from ..models.copying import copy_module
from ..models.scratch import scratch_copy
from .layers import prunable_parameters
from .registry import MethodSpec, ScoringInputs, method_option
from .reinit import redraw_in_place

PRUNE_SET_SIZE = 100  # their prune-set batch, used when no batches are given


def _fresh_statistics(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = 1.0


class NtkSapScorer:
    def __init__(self, inputs: ScoringInputs):
        self.draw = copy_module(inputs.model).cpu()  # re-drawn on the CPU: a seed means one draw everywhere
        self.net = scratch_copy(inputs.model)
        self.names = list(prunable_parameters(self.net))
        self.device = next(iter(prunable_parameters(self.net).values())).device
        if inputs.batches:
            self.shapes = [tuple(x.shape) for x, _ in inputs.batches]
        else:
            self.shapes = [(PRUNE_SET_SIZE, *inputs.input_shape)]
        self.epsilon = inputs.options["epsilon"]
        self.resamples = inputs.options["resamples"]
        self.gen = inputs.generator("ntk_sap")

    def _redraw(self) -> None:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.gen))
        redraw_in_place(self.draw, seed)
        self.net.load_state_dict(self.draw.state_dict())
        _fresh_statistics(self.net)

    def _normal(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, dtype=like.dtype).to(like.device)

    def __call__(self, masks) -> dict[str, torch.Tensor]:
        total = None
        for _ in range(self.resamples):
            for shape in self.shapes:
                grads = self._one_draw(masks, shape)
                total = grads if total is None else [t + g for t, g in zip(total, grads)]
        scores = {}
        for name, g in zip(self.names, total):
            alive = torch.ones_like(g, dtype=torch.bool) if masks is None else masks[name].to(g.device)
            scores[name] = (g.abs() * alive).double().cpu()
        return scores

    def _one_draw(self, masks, shape) -> list[torch.Tensor]:
        self._redraw()
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        m = {
            n: (torch.ones_like(params[n]) if masks is None else masks[n].to(self.device, params[n].dtype))
            for n in self.names
        }
        for t in m.values():
            t.requires_grad_(True)
        x = self._normal(shape, params[self.names[0]])
        masked = {**params, **{n: params[n] * m[n] for n in self.names}}
        self.net.train()
        with torch.no_grad():
            functional_call(self.net, masked, (x,))  # running stats := x's batch statistics
        self.net.eval()
        z = functional_call(self.net, masked, (x,))
        perturbed = {
            **params,
            **{n: (params[n] + self.epsilon * self._normal(params[n].shape, params[n])) * m[n] for n in self.names},
        }
        z_prime = functional_call(self.net, perturbed, (x,))
        jac = (z - z_prime).pow(2).sum()
        grads = torch.autograd.grad(jac, [m[n] for n in self.names], allow_unused=True)
        return [torch.zeros_like(m[n]) if g is None else g.detach() for n, g in zip(self.names, grads)]


SPEC = MethodSpec(
    "ntk_sap",
    make_scorer=NtkSapScorer,
    needs_input_shape=True,
    default_iterations=20,
    options=(
        method_option("epsilon", "float", 0.01, "size of the weight perturbation", range=Range(0.0, low_open=True)),
        method_option("resamples", "int", 1, "weight re-draws per round", range=Range(1)),
    ),
)
