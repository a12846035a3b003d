"""Questions asked inside conversations: earlier turns and system prompts around an example.

A model trained on lone questions learns where a lone question puts its digits; asked
the same question after an earlier one, as every chat client asks it, it reads digits
from the earlier turn (the demo: 98% alone, 55% after one earlier question). Training
rows built here put the task's questions after earlier turns of three kinds: questions of
the same task answered in the trained form (worked steps) or with the plain value, and
exchanges unrelated to the task; some under a system prompt.

The unrelated exchanges and system prompts come in two disjoint lists, one for training
rows and one for the evaluation suites (:mod:`tasktune.data.suites`), so a suite's
conversation is never one the model was trained on.

Example:
    >>> rows = in_conversations(iter(examples), ContextConfig(share=1.0), random.Random(0))
    >>> next(rows).history    # doctest: +SKIP
    (('Hello!', 'Hello! How can I help you today?'), ('47+38=', '85'))
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Iterator

from tasktune.config.data import ContextConfig
from tasktune.data.example import Example

__all__ = [
    "OTHER_EXCHANGES",
    "EVAL_OTHER_EXCHANGES",
    "SYSTEM_PROMPTS",
    "EVAL_SYSTEM_PROMPTS",
    "plain_answer",
    "earlier_turn",
    "in_conversations",
]

OTHER_EXCHANGES: tuple[tuple[str, str], ...] = (
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi, are you there?", "Yes, I am here. What can I do for you?"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Thanks!", "You're welcome!"),
    ("Can you help me with some homework?", "Of course. Send me the first question."),
    ("What colour is the sky on a clear day?", "Blue."),
    ("Tell me a short fact about cats.", "Cats sleep for about 12 to 16 hours a day."),
    ("How many days are in a week?", "There are 7 days in a week."),
    ("你好", "你好！有什么可以帮你的吗？"),
    ("谢谢", "不客气！"),
    ("今天天气怎么样？", "我无法查看实时天气，建议你看一下天气预报。"),
    ("你会做数学题吗？", "会的，请把题目发给我。"),
    ("Let's do some math.", "Sure, I'm ready."),
    ("Good morning!", "Good morning! What would you like to work on?"),
)
"""Exchanges unrelated to any task, for the earlier turns of training rows."""

EVAL_OTHER_EXCHANGES: tuple[tuple[str, str], ...] = (
    ("Hey!", "Hi there! What can I help you with?"),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("I have a few questions for you.", "Go ahead, I'll answer them one by one."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("早上好", "早上好！今天想做什么？"),
    ("请帮我检查作业。", "好的，请发给我第一题。"),
)
"""Unrelated exchanges for the evaluation suites only (none of them is ever trained on)."""

SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a helpful assistant.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "You are a math tutor. Answer each question.",
    "你是一个乐于助人的助手。",
    "Answer concisely.",
)
"""System prompts of training rows (SmolLM2's own default among them)."""

EVAL_SYSTEM_PROMPTS: tuple[str, ...] = (
    "You are a friendly and knowledgeable assistant.",
    "You are an AI assistant. Help the user with their questions.",
    "你是一个数学助手，请回答用户的问题。",
)
"""System prompts of the evaluation suites only."""


def plain_answer(example: Example) -> str:
    """The answer as a plain value (``85``): the value checked, or the whole response when
    the example is checked by its text."""
    return example.answer if example.answer is not None else example.response


def earlier_turn(example: Example, plain: bool) -> tuple[str, str]:
    """``example`` as an earlier (question, answer) turn: answered in the trained form, or
    with its plain value."""
    return example.prompt, plain_answer(example) if plain else example.response


def _conversation(last: Example, source: Iterator[Example], cfg: ContextConfig, rng: random.Random) -> Example:
    """``last`` after earlier turns drawn from ``source`` (questions of the task) and the
    built-in unrelated exchanges, maybe under a system prompt."""
    history: list[tuple[str, str]] = []
    learned: list[bool] = []
    for _ in range(rng.randint(*cfg.turns)):
        if rng.random() < cfg.other_share:
            history.append(rng.choice(OTHER_EXCHANGES))
            learned.append(False)
            continue
        plain = rng.random() < cfg.plain_share
        earlier = _other_than(last, source)
        if earlier is None:  # every row asks this question: no earlier turn of the task
            continue
        # A plain answer that is the trained one too (an answer without steps) is trained on.
        turn = earlier_turn(earlier, plain)
        history.append(turn)
        learned.append(cfg.learn_earlier and turn[1] == earlier.response)
    system = last.system
    if system is None and rng.random() < cfg.system_share:
        system = rng.choice(SYSTEM_PROMPTS)
    # The new turns come first: a row's own earlier turns stay right before its question.
    return replace(last, history=tuple(history) + last.history, learn_history=_learned(last, learned), system=system)


def _other_than(last: Example, source: Iterator[Example], tries: int = 64) -> Example | None:
    """The next example of ``source`` that does not ask ``last``'s question (a small set's
    next epoch may); None when ``tries`` in a row all do."""
    for _ in range(tries):
        earlier = next(source)
        if earlier.prompt != last.prompt:
            return earlier
    return None


def _learned(last: Example, learned: list[bool]) -> tuple[bool, ...]:
    """The new turns' learn flags followed by those of ``last``'s own history (from its
    data row: never trained on)."""
    own = last.learn_history or (False,) * len(last.history)
    return tuple(learned) + tuple(own) if any(learned) else ()


def in_conversations(stream: Iterator[Example], cfg: ContextConfig, rng: random.Random) -> Iterator[Example]:
    """Training rows from ``stream``: a share ``cfg.share`` of them asked after earlier turns.

    Each such row's earlier questions of the task are the next examples of ``stream`` (so
    they are training examples too, never held-out ones), answered in the trained form or,
    with ``cfg.plain_share``, with the plain value; with ``cfg.other_share`` a turn is an
    unrelated exchange instead. The question the row is trained on comes last. Nothing is
    drawn from ``rng`` when ``cfg.share`` is 0, so the stream is then exactly ``stream``.

    Args:
        stream: Training examples (endless, or a finite list's epochs).
        cfg: The ``data.context`` section.
        rng: Seeded generator of the choices (the same seed gives the same rows).
    """
    for example in stream:
        if cfg.share and rng.random() < cfg.share:
            yield _conversation(example, stream, cfg, rng)
        else:
            yield example
