"""Learning-rate schedule: linear warm-up, then cosine, linear or constant decay."""

from __future__ import annotations

import math

from tasktune.config import TrainConfig

__all__ = ["lr_at"]


def lr_at(step: int, cfg: TrainConfig, seconds: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``cfg.max_steps``.

    Warm-up rises linearly to ``cfg.lr`` over ``warmup_steps``; the decay then falls to
    ``lr * min_lr_ratio`` at the last step, or at ``max_minutes`` of training
    (``seconds`` so far) when that comes first.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.max_steps - 1 - cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / span
    if cfg.max_minutes:
        progress = max(progress, seconds / (60.0 * cfg.max_minutes))
    progress = min(1.0, progress)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return floor + (cfg.lr - floor) * (1.0 - progress)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
