"""The unit every stage passes along: one conversation turn to learn or to check."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Example"]


@dataclass(frozen=True)
class Example:
    """One supervised example.

    Attributes:
        prompt: The last user message.
        response: The reference assistant answer, exactly as it is trained.
        system: System message from the data row (overrides the config's system prompt).
        history: Earlier (user, assistant) turns, rendered before the prompt.
        learn_history: Per earlier turn, True where its answer is trained on as well
            (a question of the task answered in the trained form); empty: none is.
        answer: Canonical numeric value checked by the verifier (e.g. ``"-5"``,
            ``"8.4"``); None: the response is compared as text.
        category: Group for per-category metrics, e.g. ``"sub_int_2d2d"``.
    """

    prompt: str
    response: str
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    learn_history: tuple[bool, ...] = ()
    answer: str | None = None
    category: str = "all"
