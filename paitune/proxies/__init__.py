"""Zero-cost proxies at init (Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS").

One scalar per network, computed on one batch with the conventions of the authors' public code:
model in train mode, cross-entropy with mean reduction, per-weight scores over the Conv/Linear
weights summed over layers and elements. ``compute_proxies(model, (x, y))`` returns all of them;
with ``masks`` it scores the pruned network. The model is never changed.
"""

from paitune.proxies.compute import (
    PROXIES,
    ProxySpec,
    compute_proxies,
    proxy_names,
    register_proxy,
    runnable_proxy_names,
)

__all__ = ["PROXIES", "ProxySpec", "compute_proxies", "proxy_names", "register_proxy", "runnable_proxy_names"]
