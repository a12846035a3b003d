"""Stage 2 settings, ``encoding``: chat template, system prompt and length limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["EncodingConfig"]


@dataclass(frozen=True)
class EncodingConfig:
    system_prompt: str | None = ""
    """System message of every conversation. "" (default): an empty system turn, which stops
    templates such as SmolLM2's from injecting their own default (about half the tokens of a
    short problem). null: no system message, the template's default applies."""
    template: str | None = None
    """Built-in chat template: chatglm (legacy ChatGLM-6B), chatml, or plain (prompt, newline, answer, EOS; no role
    markers: for base models without a template); null: the tokenizer's own."""
    max_length: int = 512
    """Longest example in tokens, prompt and answer together."""
    overlong: Literal["truncate", "drop", "error"] = "drop"
    """What to do with a longer example: truncate the prompt from the left, drop it (counted), or stop."""

    def problems(self) -> list[str]:
        if self.max_length < 8:
            return [f"encoding.max_length: must be at least 8, got {self.max_length}"]
        return []
