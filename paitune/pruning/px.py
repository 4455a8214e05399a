"""PX (Iurada et al. 2024): path-kernel saliency with the data's activation patterns.

Each round, for each scoring batch (inputs only; labels are never read):
1. gates g = 1[z > 0] of every ReLU input z of the masked net in eval mode on x, in call order;
2. z1 = J(x * x) without gradient, J a train-mode copy whose prunable layers (but the classifier)
   have weight m and bias 1, and whose ReLUs are z -> z * g;
3. z2 = K(1), K a train-mode copy whose prunable layers (but the classifier) have weight w^2 * m
   and bias b^2, and whose ReLUs are the identity;
4. G += dR/dp * m with R = sum(z1 * z2) and p = K's weight (w^2 * m, or the classifier's w * m).
The score is |G| * w^2. The classifier and norm layers keep their parameters and buffers.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..models.scratch import scratch_copy
from .layers import parameter_users, prunable_parameters
from .registry import MethodSpec, ScoringInputs
from .relu_calls import ReluCalls, relu_inputs


class PxScorer:
    def __init__(self, inputs: ScoringInputs):
        self.net = scratch_copy(inputs.model)
        params = prunable_parameters(self.net)
        self.names = list(params)
        self.classifier = self.names[-1]
        self.original = {n: p.detach().clone() for n, p in params.items()}
        # Every layer but the classifier: its bias by parameter name (a tied weight's layers each have one).
        self.biases = {}
        modules = dict(self.net.named_modules())
        params_by_id = {id(p): name for name, p in self.net.named_parameters()}
        users = parameter_users(self.net)
        for weight_name in self.names[:-1]:
            for module_name, attr in users[weight_name]:
                bias = getattr(modules[module_name], "bias", None) if attr == "weight" else None
                if bias is not None:
                    self.biases[params_by_id[id(bias)]] = bias.detach()
        self.inputs = [x for x, _ in inputs.batches]
        # The norm layers' buffers as the model has them: J and K run in train mode on copies of
        # them each time, so the gates always come from the model's own running statistics.
        self.buffers = {name: b.detach().clone() for name, b in self.net.named_buffers()}

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {name: b.clone() for name, b in self.buffers.items()}

    def __call__(self, masks) -> dict[str, torch.Tensor]:
        m = {
            n: (torch.ones_like(w) if masks is None else masks[n].to(w.device, w.dtype))
            for n, w in self.original.items()
        }
        base = {name: p.detach() for name, p in self.net.named_parameters()}
        total = {n: torch.zeros_like(w) for n, w in self.original.items()}
        for x in self.inputs:
            x = x.to(self.original[self.names[0]].device)
            for n, g in self._one_batch(base, m, x).items():
                total[n] += g
        return {n: (total[n].abs() * self.original[n].pow(2)).double().cpu() for n in self.names}

    def _one_batch(self, base, m, x) -> dict[str, torch.Tensor]:
        masked = {**base, **{n: self.original[n] * m[n] for n in self.names}}
        self.net.eval()
        with torch.no_grad():
            _, zs = relu_inputs(lambda t: functional_call(self.net, {**masked, **self.buffers}, (t,)), x)
        gates = [(z > 0).to(z.dtype) for z in zs]

        # J: the activation pattern's paths, counted; its ReLUs apply the gates in call order.
        j_params = dict(masked)
        for n in self.names[:-1]:
            j_params[n] = m[n]
        for bias_name, bias in self.biases.items():
            j_params[bias_name] = torch.ones_like(bias)
        calls = iter(gates)
        self.net.train()
        with torch.no_grad(), ReluCalls(lambda z, default: z * next(calls)):
            z1 = functional_call(self.net, {**j_params, **self._buffers()}, (x * x,))

        # K: the paths' squared weights, a linear net of the weights p.
        p = {n: (self.original[n].pow(2) * m[n]).requires_grad_(True) for n in self.names[:-1]}
        p[self.classifier] = (self.original[self.classifier] * m[self.classifier]).requires_grad_(True)
        k_params = {**masked, **p}
        for bias_name, bias in self.biases.items():
            k_params[bias_name] = bias.pow(2)
        with ReluCalls(lambda z, default: z):
            z2 = functional_call(self.net, {**k_params, **self._buffers()}, (torch.ones_like(x),))
        grads = torch.autograd.grad((z1 * z2).sum(), [p[n] for n in self.names], allow_unused=True)
        return {n: (torch.zeros_like(p[n]) if g is None else g.detach()) * m[n] for n, g in zip(self.names, grads)}


SPEC = MethodSpec("px", make_scorer=PxScorer, needs_data=True, default_iterations=100)
