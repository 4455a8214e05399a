"""Masked training: an epoch-at-a-time loop that keeps pruned weights at zero."""

from .trainer import LR_SCHEDULES, OPTIMIZERS, Diverged, EpochMetrics, TrainConfig, Trainer, evaluate, train

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "Diverged", "EpochMetrics", "TrainConfig", "Trainer", "evaluate", "train"]
