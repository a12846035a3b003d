"""One way to time tasktune's training steps, shared by the benchmarks that do.

:class:`StepTimer` reads the loop's own clock: each :class:`tasktune.train.StepInfo`
carries the seconds of the loop's own work so far (the caller's work between steps
left out), so a step's time is the difference of two consecutive ``seconds``, and its
examples and non-pad tokens the differences of the running totals. Steps advanced with
``timed=False`` (warm-up: the first steps allocate memory and run slower) only move the
mark.
"""

from __future__ import annotations

from typing import Iterator

__all__ = ["StepTimer"]


class StepTimer:
    """Timed totals of a :func:`tasktune.train.train_steps` run."""

    def __init__(self, steps: Iterator):
        self.steps = steps
        self.last = None
        self.times: list[float] = []
        self.examples = 0
        self.tokens = 0

    def advance(self, n: int, timed: bool = True) -> None:
        """Run ``n`` more optimizer steps; count them unless ``timed`` is false."""
        for _ in range(n):
            info = next(self.steps)
            if timed:
                before = self.last
                self.times.append(info.seconds - (before.seconds if before else 0.0))
                self.examples += info.examples - (before.examples if before else 0)
                self.tokens += info.tokens - (before.tokens if before else 0)
            self.last = info

    @property
    def seconds(self) -> float:
        return sum(self.times)

    def rates(self) -> dict:
        """examples/s and non-pad tokens/s over the timed steps."""
        return {"examples_per_second": self.examples / self.seconds, "tokens_per_second": self.tokens / self.seconds}

    def close(self) -> None:
        self.steps.close()
