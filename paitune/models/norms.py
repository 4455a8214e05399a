"""Normalization layers, and taking them out of a scratch copy.

Some computations need the network without its normalization: the mask report's collapse probe
(a constant signal, which layer and group norm normalize to 0 and a one-sample batch norm cannot
normalize at all) and the synflow proxy's linearized net (batch norm only, as Abdelfattah et al.).
"""

from __future__ import annotations

from torch import nn

# Every normalization layer: batch norm and instance norm (both ``_NormBase``), layer norm, group norm.
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def replaced_by_identity(net: nn.Module, types: tuple[type[nn.Module], ...]) -> nn.Module:
    """``net`` with every layer of ``types`` replaced by an identity, in place; returns the root
    (an identity itself when the root is such a layer). Use on a private copy."""
    if isinstance(net, types):
        return nn.Identity()
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, types):
                setattr(module, child_name, nn.Identity())
    return net
