"""Stage 7 and 8 settings: ``generate`` (decoding and its cap) and ``eval`` (held-out
evaluation before, during and after training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GenerateConfig", "EvalConfig", "SUITES"]

SUITES = ("turns_1", "turns_3", "system", "styles", "longer")
"""The robustness suites (:attr:`EvalConfig.suites`)."""


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int | None = None
    """Cap on generated tokens; null: from the task (longest reference + 8, at most 512)."""
    do_sample: bool = False
    """Sample instead of greedy decoding. Off by default so that scores reproduce; when on,
    the settings below are recorded in report.md."""
    temperature: float = 0.7
    """Sampling temperature (do_sample only)."""
    top_p: float = 0.9
    """Nucleus sampling mass (do_sample only)."""
    seed: int = 0
    """Seed of the sampling (do_sample only): the same seed gives the same answers."""

    def problems(self) -> list[str]:
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            return [f"generate: temperature must be > 0 and top_p within (0, 1], got {self.temperature} and {self.top_p}"]
        return []


@dataclass(frozen=True)
class EvalConfig:
    max_examples: int = 300
    """Held-out examples evaluated before and after training."""
    batch_size: int = 64
    """Rows generated together."""
    base: bool = True
    """Evaluate the untuned base model too, on the same examples."""
    seed: int = 1234
    """Seed of the held-out arithmetic problems (disjoint from training by construction)."""
    every: int = 0
    """Also evaluate every N optimizer steps during training (0: only before and after);
    the best of these is saved as checkpoint-best/. Not counted as training time."""
    every_examples: int | None = None
    """Held-out examples used by the in-training evaluations (the first N); null: all."""
    metric: Literal["auto", "exact_match", "rouge-1", "rouge-2", "rouge-l", "bleu-4"] = "auto"
    """The figure that picks checkpoint-best/, that train.stop_at is compared with, and that
    report.md plots over steps. auto: exact_match when the held-out answers are checked by
    value (arithmetic, GSM8K, Math23K), else rouge-l. Every figure is reported either way."""
    suites: tuple[str, ...] = SUITES
    """Robustness suites evaluated after training (and by `tasktune eval`) beside the held-out
    set, each the held-out examples asked another way: turns_1 / turns_3 after 1 / 3 earlier
    turns of a conversation (earlier questions of the task answered worked or plain, and
    unrelated exchanges; never the question itself), system under a system prompt, styles in
    each other prompt style of the task (the tutorial's Chinese pairs for bare prompts), longer
    with operands one digit longer than any training operand (generated tasks). Suites that do
    not apply to a task are left out; [] evaluates none."""
    suite_examples: int | None = None
    """Held-out examples each suite asks (the first N); null: all of `max_examples`."""

    def problems(self) -> list[str]:
        p: list[str] = []
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            p.append(f"eval.suites: unknown suite(s) {unknown}; choose from {', '.join(SUITES)} (or [] for none)")
        if self.suite_examples is not None and self.suite_examples < 1:
            p.append(f"eval.suite_examples: must be at least 1 (or null for all), got {self.suite_examples}")
        if self.every < 0 or self.every_examples is not None and self.every_examples < 1:
            p.append("eval.every must be >= 0 and eval.every_examples >= 1 (or null)")
        if self.max_examples < 1:
            p.append(f"eval.max_examples: must be at least 1 (the held-out set proves learning), got {self.max_examples}")
        return p
