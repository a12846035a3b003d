"""Learning-rate schedule: linear warm-up, then cosine, linear or constant decay, over a
step count that shrinks only when the time budget cannot hold it."""

from __future__ import annotations

import math

from tasktune.config.train import TrainConfig

__all__ = ["KEEP_SCHEDULE_SHORTFALL", "lr_at", "steps_that_fit", "Pace", "reschedule_message"]

KEEP_SCHEDULE_SHORTFALL = 0.05
"""A projected shortfall up to this share of the planned steps leaves the schedule as it
is: the pace it is projected from drifts more than that from one minute to the next
(up to 25% on the development CPU), and rescheduling moves the learning rate of every
step after it, so the run leaves its reproducible trajectory for nothing when the pace
recovers (measured: a 3-digit run rescheduled to 233, 236, 232, 234 and back to 240
steps ended at 95.6%, where the same 240 steps undisturbed reached 99.2%). If the
deadline does come first, the steps it takes are the last few of the decay, trained at a
few percent of the peak learning rate."""


def lr_at(step: int, cfg: TrainConfig, total: int | None = None) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a run of ``total`` steps
    (default ``cfg.max_steps``; the loop passes fewer when ``max_minutes`` cannot hold
    them all, see :func:`steps_that_fit`).

    Warm-up rises linearly to ``cfg.lr`` over ``warmup_steps``; the decay then falls to
    ``lr * min_lr_ratio`` at the last step. A function of the step alone: a run that ends
    on its step count reproduces exactly, however fast the machine ran that minute.
    """
    total = cfg.max_steps if total is None else total
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total - 1 - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return floor + (cfg.lr - floor) * (1.0 - progress)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_that_fit(done: int, seconds: float, timed_seconds: float, timed_steps: int, cfg: TrainConfig, total: int) -> int:
    """The run's step count, given its pace so far: ``total``, or fewer when the steps
    left would not end within ``cfg.max_minutes`` by more than
    :data:`KEEP_SCHEDULE_SHORTFALL` of ``total``.

    Args:
        done: Steps taken.
        seconds: Training seconds so far.
        timed_seconds, timed_steps: The recent pace: seconds over that many steps.
        total: The step count planned (the loop passes ``max_steps``).
    """
    if not cfg.max_minutes or timed_steps < 1 or done >= total:
        return total
    per_step = timed_seconds / timed_steps
    left = 60.0 * cfg.max_minutes - seconds
    if per_step * (total - done) <= left:
        return total
    fits = max(done + 1, done + int(left / per_step))
    return total if fits >= total * (1.0 - KEEP_SCHEDULE_SHORTFALL) else fits


class Pace:
    """The time budget (``max_minutes``), in seconds of the training loop's own work:
    time the caller spends between steps (saving a checkpoint, evaluating) is not
    training time and does not use it up.

    The schedule is a function of the step (runs reproduce); when ``max_minutes`` cannot
    hold ``max_steps`` at the recent pace, the run is shortened to what fits and the decay
    still ends at its floor. Checked every 10% of ``max_steps`` on the pace since the last
    check; the first steps (up to 10), slow while memory is allocated, are left out of
    the pace (measured: 1.7 s/step over the demo's first 10 steps, then 1.4), and a
    later check may give back steps a passing slowdown took.
    """

    def __init__(self, cfg: TrainConfig, first_step: int):
        self.cfg = cfg
        self.deadline = 60.0 * cfg.max_minutes if cfg.max_minutes else math.inf
        self.checks = {cfg.max_steps * k // 10 for k in range(1, 10)} - {0, 1}
        self.window, self.window_steps = 0.0, 0
        self.settled = first_step + min(10, max(1, cfg.max_steps // 20))  # steps before it are not the pace

    def record(self, step: int, took: float, seconds: float, total: int) -> int:
        """Step ``step`` (0-based) took ``took`` seconds, ``seconds`` in all so far; returns
        the step count the schedule ends on from now (``total`` unless a check moves it)."""
        if step >= self.settled:
            self.window, self.window_steps = self.window + took, self.window_steps + 1
        if step + 1 in self.checks and step + 1 < total:
            total = steps_that_fit(step + 1, seconds, self.window, self.window_steps, self.cfg, self.cfg.max_steps)
            self.window, self.window_steps = 0.0, 0
        return total

    def spent(self, seconds: float) -> bool:
        return seconds >= self.deadline


def reschedule_message(fits: int, cfg: TrainConfig) -> str:
    """What the loop says when the time budget moves the schedule's end to ``fits``."""
    if fits >= cfg.max_steps:
        return (f"train.max_minutes={cfg.max_minutes}: at this pace all {cfg.max_steps} steps fit again; "
                "the schedule ends on train.max_steps")
    return f"train.max_minutes={cfg.max_minutes}: at this pace {fits} of {cfg.max_steps} steps fit; the schedule now ends there"
