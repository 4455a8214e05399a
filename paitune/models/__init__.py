"""Models for PaI experiments: small nets, VGG, CIFAR ResNets, ResNet-18 and wide ResNets.

model = build_model("resnet20", (3, 32, 32), 10, seed=0)
model.input_shape        # (3, 32, 32)
model.reset_parameters() # fresh weights from the model's own initializer (global torch RNG)
"""

from paitune.models.base import PaiModel, init_module
from paitune.models.copying import copy_module
from paitune.models.registry import MODELS, build_model, model_names, register_model

__all__ = ["MODELS", "PaiModel", "build_model", "copy_module", "init_module", "model_names", "register_model"]
