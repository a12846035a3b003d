"""Robustness suites: the held-out examples asked the ways people ask them.

A held-out set asked one way (a lone question, the training prompt style, the training
lengths) measures that way only. Each suite asks the same held-out questions another
way, and the model must answer them just as well:

* ``turns_1``, ``turns_3``: after 1 or 3 earlier turns of a conversation. Earlier questions
  of the task are drawn apart from the held-out set (a file task takes its other held-out
  rows), so no earlier turn is the question itself or states its answer; they are
  answered in the trained form or with the plain value, and some turns are exchanges
  unrelated to the task (from a list never trained on).
* ``system``: under a system prompt never trained on.
* ``style_<name>``: the task's other prompt styles (arithmetic: the tutorial's Chinese
  pairs for bare prompts, bare prompts for Chinese pairs).
* ``longer``: new problems whose operands have one digit more than any training operand
  (generated tasks): a procedure learned as positions in a row of fixed length fails here.

Example:
    >>> suites = build_suites(cfg.data, ("turns_1", "system"), held_out, problems, seed=1234)
    >>> [(name, len(rows)) for name, rows in suites.items()]    # doctest: +SKIP
    [('turns_1', 300), ('system', 300)]
"""

from __future__ import annotations

import random
from dataclasses import replace

from tasktune.config.data import PROMPT_FORMATS, DataConfig
from tasktune.data import arithmetic
from tasktune.data.conversation import EVAL_OTHER_EXCHANGES, EVAL_SYSTEM_PROMPTS, earlier_turn, plain_answer
from tasktune.data.example import Example

__all__ = ["build_suites", "longer_config"]


def longer_config(cfg: DataConfig) -> DataConfig:
    """The arithmetic settings of the ``longer`` suite: both operands of exactly one digit
    more than the longest training operand (``digits: [1, 3]`` -> 4-digit operands)."""
    a = cfg.arithmetic
    top = arithmetic.longest_operand(a) + 1
    return replace(cfg, arithmetic=replace(a, digits=(top, top), digits_b=None, digit_sampling="uniform"))


def _twins(problem: arithmetic.Problem) -> set[tuple]:
    """The problem's key and, for + and *, its commutative twin's (``38+47`` for ``47+38``)."""
    a, op, b = problem.key
    return {(a, op, b), (b, op, a)} if op in "+*" else {(a, op, b)}


def _earlier_pool(cfg: DataConfig, held_out: list[Example], every: list | None, seed: int) -> list[Example]:
    """Questions for earlier turns: up to 200 generated apart from every held-out problem
    and its commutative twin (arithmetic; as many as a small problem space has), or the
    held-out rows themselves (a file: each row's earlier turns are other rows)."""
    if every is None:
        return held_out
    exclude = set().union(*(_twins(p) for p in every))
    a = cfg.arithmetic
    rng = random.Random(f"suite-turns-{seed}")
    chosen: dict[tuple, arithmetic.Problem] = {}
    for _ in range(50 * 200):
        if len(chosen) == 200:
            break
        problem = arithmetic.sample_problem(rng, a)
        if not _twins(problem) & exclude:
            chosen.setdefault(problem.key, problem)
    return [arithmetic.to_example(p, rng, a) for p in chosen.values()]


def _with_turns(example: Example, index: int, turns: int, pool: list[Example], rng: random.Random) -> Example:
    """``example`` after ``turns`` earlier turns: with one turn, answered in the trained
    form and plainly in alternate rows; with more, each turn worked (40%), plain (40%) or
    an unrelated exchange (20%). No earlier question is the example's own or has its answer."""
    others = [e for e in pool if e.prompt != example.prompt and plain_answer(e) != plain_answer(example)]
    history = []
    for _ in range(turns):
        if turns == 1:
            kind = "plain" if index % 2 else "worked"
        else:
            kind = rng.choices(("worked", "plain", "other"), weights=(0.4, 0.4, 0.2))[0]
        if kind == "other" or not others:
            history.append(rng.choice(EVAL_OTHER_EXCHANGES))
        else:
            history.append(earlier_turn(rng.choice(others), plain=kind == "plain"))
    return replace(example, history=tuple(history) + example.history, learn_history=())


def build_suites(
    cfg: DataConfig, names: tuple[str, ...], held_out: list[Example], problems: list | None, seed: int,
    every: list | None = None,
) -> dict[str, list[Example]]:
    """The suites named in ``names`` that apply to the task, each built from ``held_out``.

    Args:
        cfg: The ``data`` section.
        names: Suites to build (:data:`tasktune.config.SUITES`); ``styles`` gives one
            ``style_<name>`` suite per other prompt style, ``longer`` as many new problems
            as ``held_out`` has.
        held_out: The held-out examples (the first N of the eval set).
        problems: The arithmetic problems of ``held_out`` (same order); None for a file task.
        seed: ``eval.seed``: every suite is the same for the same seed.
        every: Every held-out problem (``held_out`` may be the first N): no earlier turn
            is any of them; None: ``problems``.

    Returns:
        Suite name -> examples, in the order of ``names``; a suite that does not apply
        (``styles`` and ``longer`` for a file task, earlier turns for a one-row file) is
        left out.
    """
    suites: dict[str, list[Example]] = {}
    generated = cfg.task == "arithmetic" and problems is not None
    pool: list[Example] | None = None  # the earlier-turn questions, drawn once for both turn suites
    for name in names:
        rng = random.Random(f"suite-{name}-{seed}")
        if name in ("turns_1", "turns_3"):
            if pool is None:
                pool = _earlier_pool(cfg, held_out, (every or problems) if generated else None, seed)
            if len({e.prompt for e in pool}) < 2:
                continue
            turns = int(name[-1])
            suites[name] = [_with_turns(e, i, turns, pool, rng) for i, e in enumerate(held_out)]
        elif name == "system":
            suites[name] = [replace(e, system=EVAL_SYSTEM_PROMPTS[i % len(EVAL_SYSTEM_PROMPTS)])
                            for i, e in enumerate(held_out)]
        elif name == "styles" and generated:
            a = cfg.arithmetic
            for style in (s for s in PROMPT_FORMATS if s != a.prompt_format):
                suites[f"style_{style}"] = [arithmetic.to_example(p, rng, a, style) for p in problems]
        elif name == "longer" and generated:
            longer = longer_config(cfg).arithmetic
            drawn = arithmetic.eval_problems(longer, len(held_out), seed)
            suites[name] = [arithmetic.to_example(p, rng, longer) for p in drawn]
    return suites
