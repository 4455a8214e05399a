"""compute_proxies: every zero-cost proxy of one network at init, by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from paitune.errors import PaituneError
from paitune.proxies import activation, cost, gradient
from paitune.proxies.activation import check_swap_settings
from paitune.proxies.fisher import fisher
from paitune.proxies.jacob_cov import jacob_cov
from paitune.proxies.meco import meco
from paitune.proxies.network import (
    MaskedNet,
    check_batch,
    check_masks,
    fixed_rng,
    model_device,
    working_copy,
)
from paitune.proxies.synflow import synflow
from paitune.proxies.zen import zen
from paitune.proxies.zico import zico
from paitune.pruning.grad_mode import autograd_tensor, gradients_on
from paitune.registry import Registry

Proxy = Callable[..., float]  # (masked, x, y, **settings) -> value


@dataclass(frozen=True)
class ProxySpec:
    """One proxy: its function, and what ``compute_proxies`` needs to know to run it.

    ``from_loss_gradients``: the same value from ``gradient.loss_gradients`` of a fresh working copy;
    when several such proxies are asked for, one copy and one backward pass serve them all (each
    would run the very same computation on its own identical copy with the same seeded RNG, so the
    values are the same as computing them one by one). ``settings``: the keyword arguments of
    ``compute_proxies`` the function takes (None values are passed on for it to reject).
    """

    name: str
    compute: Proxy
    from_loss_gradients: Callable[[MaskedNet, list], float] | None = None
    settings: tuple[str, ...] = ()


_PROXIES: Registry[ProxySpec] = Registry("proxy")


def register_proxy(spec: ProxySpec) -> ProxySpec:
    """Make ``spec.name`` a value of the trial option ``proxies`` and of ``paitune proxies --names``."""
    return _PROXIES.add(spec.name, spec)


for _spec in (
    ProxySpec("grad_norm", gradient.grad_norm, from_loss_gradients=gradient.grad_norm_from),
    ProxySpec("snip", gradient.snip, from_loss_gradients=gradient.snip_from),
    ProxySpec("grasp", gradient.grasp),
    ProxySpec("fisher", fisher),
    ProxySpec("synflow", synflow),
    ProxySpec("jacob_cov", jacob_cov),
    ProxySpec("params", cost.params),
    ProxySpec("flops", cost.flops),
    ProxySpec("naswot", activation.naswot),
    ProxySpec("zico", zico),
    ProxySpec("meco", meco),
    ProxySpec("swap", activation.swap),
    ProxySpec("swap_reg", activation.swap_reg, settings=("swap_mu", "swap_sigma")),
    ProxySpec("zen", zen),
):
    register_proxy(_spec)


def proxy_names() -> tuple[str, ...]:
    """The proxies registered so far (plug-ins included), in registration order."""
    return _PROXIES.names()


PROXIES: tuple[str, ...] = proxy_names()  # the built-in proxies


def runnable_proxy_names(settings: dict) -> list[str]:
    """Every registered proxy whose settings ``settings`` gives (not None): what "all proxies"
    means, since swap_reg cannot run without swap_mu and swap_sigma."""
    return [s.name for s in _PROXIES.specs() if all(settings.get(key) is not None for key in s.settings)]


def _selected(names: Iterable[str] | str | None, settings: dict) -> list[str]:
    """The requested proxy names, checked, duplicates dropped, in the order given.

    None means every proxy whose settings are given (swap_reg only with swap_mu and swap_sigma).
    """
    if names is None:
        return runnable_proxy_names(settings)
    if isinstance(names, str):
        names = [names]
    selected = list(dict.fromkeys(names))
    for name in selected:
        _PROXIES.get(name)
    return selected


def compute_proxies(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    names: Iterable[str] | str | None = None,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    swap_mu: float | None = None,
    swap_sigma: float | None = None,
) -> dict[str, float]:
    """Zero-cost proxies of ``model`` on one batch ``(x, y)``, as {name: value}.

    ``names`` picks registered proxies (None: all, swap_reg only when ``swap_mu`` and
    ``swap_sigma`` are given: its regularizer's center and width in thousands of parameters,
    without which asking for it is a PaituneError). ``masks`` ({parameter name: bool
    tensor}) scores the pruned network: each proxy runs on its own deep copy with
    ``weight * mask`` applied, so the model itself is never changed and no proxy sees another's
    gradients (grad_norm and snip, functions of the same loss gradients, share one copy and one
    backward pass, with the values each gets alone). Each proxy is deterministic given model and
    batch (the RNG is seeded for it and the caller's RNG state restored).
    """
    if not isinstance(model, nn.Module):
        raise PaituneError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    settings = {"swap_mu": swap_mu, "swap_sigma": swap_sigma}
    selected = _selected(names, settings)
    if "swap_reg" in selected:
        check_swap_settings(swap_mu, swap_sigma)  # before any proxy runs
    device = model_device(model)
    results: dict[str, float] = {}
    from_gradients: dict[str, float] | None = None  # every selected one, from the first's backward pass
    # Gradients are the proxies' substance: a caller's torch.no_grad() or inference_mode() must not
    # switch them off.
    with gradients_on():
        x, y = (autograd_tensor(t) for t in check_batch(batch, device))
        checked_masks = {name: autograd_tensor(m) for name, m in check_masks(model, masks).items()}
        for name in selected:
            spec = _PROXIES.get(name)
            if spec.from_loss_gradients is not None and from_gradients is not None:
                results[name] = from_gradients[name]
                continue
            masked = working_copy(model, checked_masks)
            with fixed_rng(device):
                if spec.from_loss_gradients is not None:
                    grads = gradient.loss_gradients(masked, x, y)
                    from_gradients = {
                        other: float(_PROXIES.get(other).from_loss_gradients(masked, grads))
                        for other in selected if _PROXIES.get(other).from_loss_gradients is not None
                    }  # fmt: skip
                    del grads
                    results[name] = from_gradients[name]
                else:
                    kwargs = {key: settings[key] for key in spec.settings}
                    results[name] = float(spec.compute(masked, x, y, **kwargs))
            del masked  # free this copy before the next one is made
    return results
