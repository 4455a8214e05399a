"""What every paitune model shares: its input shape, and one initializer it can re-apply.

Initialization (the same for every model, so PaI comparisons across models are not confounded by
init): Kaiming-normal with mode ``fan_in`` and the ReLU gain for every Conv and Linear weight
(std = sqrt(2 / fan_in)), zeros for their biases, and weight 1 / bias 0 plus fresh running
statistics for batch-norm layers. This is ``torch.nn.init.kaiming_normal_``'s default, as SynFlow's
code initializes its models (open_lth's default draws batch-norm weights from U[0, 1); GraSP's
uses fan_out for convs and N(0, 0.01) for Linear layers).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from paitune.errors import PaituneError


def init_module(module: nn.Module) -> None:
    """Apply paitune's initializer to one module (no-op for modules without parameters of their own)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.reset_running_stats()
        if module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class PaiModel(nn.Module):
    """Base class: records ``input_shape`` / ``num_classes`` and provides ``reset_parameters``.

    Subclasses build their layers and then call ``self.reset_parameters()`` as the last step of
    ``__init__``, so construction and re-initialization draw from the RNG in the same way.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def reset_parameters(self) -> None:
        """Re-draw every weight with the model's initializer, from the global torch RNG."""
        for module in self.modules():
            init_module(module)


def image_shape(model_name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``input_shape`` as (channels, height, width), or a PaituneError saying what the model needs."""
    if len(input_shape) != 3:
        raise PaituneError(
            f"model {model_name!r} needs an image input shape (channels, height, width), got {input_shape}; "
            "use model 'mlp' for flat inputs"
        )
    return input_shape  # type: ignore[return-value]


def pool_kernel(height: int, width: int) -> tuple[int, int]:
    """A 2x2 max-pool kernel, except along a side already down to 1 pixel (so small inputs work)."""
    return (2 if height >= 2 else 1, 2 if width >= 2 else 1)


def after_pool(height: int, width: int) -> tuple[int, int]:
    kh, kw = pool_kernel(height, width)
    return height // kh, width // kw
