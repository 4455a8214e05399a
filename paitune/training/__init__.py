"""Masked training: an epoch-at-a-time loop that keeps pruned weights at zero."""

from .augment import AUGMENTS, Augmenter, CropFlip, standard_policy
from .modes import PRECISIONS
from .trainer import (
    LR_SCHEDULES,
    OPTIMIZERS,
    Diverged,
    EpochMetrics,
    TrainConfig,
    Trainer,
    check_training_config,
    evaluate,
    milestone_epochs,
    train,
)

__all__ = [
    "AUGMENTS", "LR_SCHEDULES", "OPTIMIZERS", "PRECISIONS", "Augmenter", "CropFlip", "Diverged", "EpochMetrics",
    "TrainConfig", "Trainer", "check_training_config", "evaluate", "milestone_epochs", "standard_policy", "train",
]  # fmt: skip
