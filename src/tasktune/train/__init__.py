"""Stage 5, train: the loop, its loss and its learning-rate schedule."""

from tasktune.train.loop import (
    EncodeCounts,
    LoopState,
    NonFiniteLoss,
    StepInfo,
    TrainingStopped,
    make_accelerator,
    train_steps,
)
from tasktune.train.loss import count_supervised, supervised_loss_sum
from tasktune.train.schedule import lr_at

__all__ = [
    "EncodeCounts",
    "LoopState",
    "NonFiniteLoss",
    "TrainingStopped",
    "StepInfo",
    "make_accelerator",
    "train_steps",
    "count_supervised",
    "supervised_loss_sum",
    "lr_at",
]
