"""The RL stage's sampling and scoring, wired from the stages that do each: completions
from the continuous-batching engine (``generate``), rewards from the task's verifier and
the step verifier (``eval``); :func:`tasktune.train.rl.rl_steps` takes the result."""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path
from typing import Callable

from tasktune.config import GenerateConfig, RunConfig
from tasktune.data.example import Example
from tasktune.eval import is_correct, step_figures, wrong_step_span
from tasktune.generate import Completion, generate_completions
from tasktune.recipes.common import Loaded, presented
from tasktune.train.policy import Rollout

__all__ = ["make_rollout", "reward_function", "token_span", "check_reward"]

Reward = Callable[[Example, Completion, int], float]
"""A reward of one completion: the example, the completion, its index in the run's draws."""


def check_reward(cfg: RunConfig, examples: list[Example]) -> None:
    """Refuse a reward that cannot score this task, before anything trains.

    Raises:
        ValueError: the verifier on a task whose answers are text; a reward function that
            does not import.
    """
    reward = cfg.rl.reward
    if reward == "verifier" and not any(e.answer is not None for e in examples):
        raise ValueError("rl.reward: verifier checks answers by value, and this task's held-out answers are text; name a "
                         "reward function of yours as rl.reward: module:function (called with prompt, completion, "
                         "reference, answer)")
    if cfg.rl.step_credit and reward != "verifier":
        raise ValueError(f"rl.step_credit: steps are credited against the verifier's reward; rl.reward is {reward!r}")
    if reward not in ("verifier", "random"):
        _imported(reward)


def _imported(name: str) -> Callable[..., float]:
    module, _, function = name.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"rl.reward: cannot import {name!r} ({exc}); the module must be importable from the current "
                         "folder or the environment") from None
    if not callable(found):
        raise ValueError(f"rl.reward: {name!r} is not a function")
    return found


def reward_function(cfg: RunConfig) -> Reward:
    """The configured reward (``rl.reward``): the verifier's 1 or 0, a seeded coin, or a
    function of yours (a float). A completion the cap cut off never ended: 0 by the verifier."""
    if cfg.rl.reward == "verifier":

        def verifier(e: Example, done: Completion, index: int) -> float:
            numeric = e.answer is not None
            reference = e.answer if numeric else e.response
            right = is_correct(presented(cfg, done.text), reference, numeric=numeric) and done.finish_reason != "length"
            return float(right)

        return verifier
    if cfg.rl.reward == "random":
        return lambda e, done, index: float(random.Random(f"{cfg.seed}-reward-{index}").random() < 0.5)
    function = _imported(cfg.rl.reward)

    def custom(e: Example, done: Completion, index: int) -> float:
        value = function(prompt=e.prompt, completion=done.text, reference=e.response, answer=e.answer)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"rl.reward: {cfg.rl.reward} returned {value!r} for {e.prompt!r}; it must return a number")
        return float(value)

    return custom


def token_span(tokenizer, ids: tuple[int, ...] | list[int], chars: tuple[int, int], text: str) -> tuple[int, int]:
    """The tokens of ``ids`` that write characters ``[start, end)`` of ``text`` (the
    completion's stripped text): each token whose characters overlap the range."""
    start, end = chars
    lead = None
    ends = []  # characters of the stripped text written by the tokens up to each one
    for k in range(1, len(ids) + 1):
        decoded = tokenizer.decode(list(ids[:k]), skip_special_tokens=True)
        if lead is None and decoded.strip():
            lead = len(decoded) - len(decoded.lstrip())
        ends.append(0 if lead is None else len(decoded) - lead)
    if start >= len(text):  # nothing written where the step should be: the token that ended it
        return max(0, len(ids) - 1), len(ids)
    first = next((k for k, e in enumerate(ends) if e > start), len(ids) - 1)
    last = next((k for k, e in enumerate(ends) if e >= end), len(ids) - 1)
    return first, max(first + 1, last + 1)


def make_rollout(loaded: Loaded, model, cfg: RunConfig, cap: int) -> Callable[[list[Example], int], list[Rollout]]:
    """``rollout(examples, step)``: ``rl.num_generations`` sampled completions of each
    example (grouped, in order), each row seeded by the run's seed, the step and its place,
    scored by the reward; with worked answers, each completion's steps checked and its
    first wrong step located in its tokens."""
    rl, enc = cfg.rl, loaded.encoder
    reward = reward_function(cfg)
    per_step = cfg.train.batch_size

    def rollout(examples: list[Example], step: int) -> list[Rollout]:
        asked = [e for e in examples for _ in range(rl.num_generations)]
        first = step * per_step
        sampling = GenerateConfig(do_sample=True, temperature=rl.temperature, top_p=rl.top_p, seed=1_000_003 * cfg.seed + first)
        prompts = [enc.prompt_ids(e) for e in examples]
        done = generate_completions(model, loaded.tokenizer, [p for p in prompts for _ in range(rl.num_generations)],
                                    enc.stop_id, cap, cfg.eval.batch_size, sampling=sampling)
        out = []
        for i, (e, c) in enumerate(zip(asked, done)):
            value = reward(e, c, first + i)
            figures = step_figures(c.text, e.response, value >= 1.0) if e.answer is not None else None
            span = None
            if figures is not None and figures["first_wrong"] is not None:
                chars = wrong_step_span(c.text, e.response, value >= 1.0)
                span = token_span(loaded.tokenizer, c.ids, chars, c.text) if chars else None
            out.append(Rollout(prompts[i // rl.num_generations], list(c.ids), value, c.finish_reason == "length",
                               e.category, span, figures["steps"] if figures else 0, figures["steps_right"] if figures else 0))
        return out

    return rollout
