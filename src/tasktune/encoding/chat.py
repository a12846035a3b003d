"""Render conversations with a chat template and build supervised labels.

The prompt is the conversation rendered without the answer and with the generation
prompt; it must be a prefix of the full rendering, text and tokens alike, or the
labels would not line up (checked, with a clear error). Labels are IGNORE_INDEX
everywhere but the answer and the end-of-turn token that closes it.

Example (SmolLM2, the default empty system prompt; ⟦ ⟧ marks the supervised span):
    <|im_start|>system\\n<|im_end|>\\n<|im_start|>user\\n98+83=<|im_end|>\\n<|im_start|>assistant\\n⟦181<|im_end|>⟧
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from tasktune.constants import IGNORE_INDEX
from tasktune.data.example import Example
from tasktune.encoding.templates import get_template

__all__ = ["Encoded", "ChatEncoder"]


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels of one training example (same length, not shifted)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


class ChatEncoder:
    """Renders :class:`Example` s for one tokenizer and chat template.

    Args:
        tokenizer: A Hugging Face tokenizer.
        template: Name of a built-in template, or None for the tokenizer's own.
        system_prompt: System message for examples that carry none; None: no system
            message (the template's own default, if it has one, applies).

    Raises:
        ValueError: the tokenizer has no chat template and none was named, or the
            template does not render an answer after its prompt.
    """

    def __init__(self, tokenizer, template: str | None = None, system_prompt: str | None = ""):
        self.tokenizer = tokenizer
        self.template = get_template(template) if template else None
        if self.template is None and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template; set encoding.template to a built-in one "
                "(chatglm for legacy ChatGLM-6B, chatml, plain for base models)"
            )
        self.system_prompt = system_prompt
        self.stop_text = self._find_stop_text()
        ids = tokenizer.convert_tokens_to_ids(self.stop_text)
        if not isinstance(ids, int) or ids == tokenizer.unk_token_id:
            raise ValueError(f"the template's end-of-turn text {self.stop_text!r} is not a single token")
        self.stop_id: int = ids

    def messages(self, example: Example, with_answer: bool) -> list[dict[str, str]]:
        """The conversation as chat messages (system, history, prompt[, answer])."""
        system = example.system if example.system is not None else self.system_prompt
        msgs = [] if system is None else [{"role": "system", "content": system}]
        for user, assistant in example.history:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        msgs.append({"role": "user", "content": example.prompt})
        if with_answer:
            msgs.append({"role": "assistant", "content": example.response})
        return msgs

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=generation_prompt
        )

    def _find_stop_text(self) -> str:
        """End-of-turn text after an answer, e.g. ``<|im_end|>``; the EOS token if none."""
        probe = Example(prompt="1+1=", response="2")
        prompt = self._render(self.messages(probe, False), True)
        full = self._render(self.messages(probe, True), False)
        if not full.startswith(prompt + probe.response):
            raise ValueError(
                "the chat template does not render the answer right after the generation prompt "
                f"(prompt {prompt[-40:]!r}, full {full[-60:]!r}); choose another encoding.template"
            )
        tail = full[len(prompt) + len(probe.response) :].strip()
        if tail:
            return tail.split()[0]
        if self.tokenizer.eos_token is None:
            raise ValueError("the template closes no turn and the tokenizer has no EOS token")
        return self.tokenizer.eos_token

    def render_prompt(self, example: Example) -> str:
        """Text the model sees before it answers (ends with the generation prompt)."""
        return self._render(self.messages(example, False), True)

    def prompt_ids(self, example: Example) -> list[int]:
        """Token ids of :meth:`render_prompt` (the template supplies any BOS)."""
        return self.tokenizer(self.render_prompt(example), add_special_tokens=False).input_ids

    def encode(
        self, example: Example, max_length: int, overlong: Literal["truncate", "drop", "error"] = "drop"
    ) -> Encoded | None:
        """Token ids and labels for training; None when an overlong example is dropped.

        The last answer is supervised, and so is each earlier answer that
        ``example.learn_history`` marks (with the end-of-turn token after it, where the
        template writes one there). ``truncate`` keeps the first ``max_length`` tokens
        (the answer loses its end); an example whose prompt alone fills ``max_length`` is
        dropped either way.

        Raises:
            ValueError: the prompt is not a prefix of the full rendering, or the example
                is overlong with ``overlong="error"``.
        """
        prompt = self.render_prompt(example)
        full = self._render(self.messages(example, True), False)
        if not full.startswith(prompt):
            raise ValueError(
                "chat template: the prompt rendering is not a prefix of the full conversation "
                f"({prompt[-40:]!r} vs {full[len(prompt) - 40 : len(prompt)]!r}); the labels "
                "would be misaligned. Choose another encoding.template"
            )
        supervised = example.response + self.stop_text
        if not full[len(prompt) :].startswith(supervised):
            raise ValueError(f"chat template changed the answer text: {full[len(prompt):][:60]!r}")
        tok = self.tokenizer
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        ids = tok(prompt + supervised, add_special_tokens=False).input_ids
        if ids[: len(p_ids)] != p_ids:
            raise ValueError(
                "tokenizer: the prompt's tokens are not a prefix of the full conversation's tokens "
                f"(the text {prompt[-20:]!r} merges with the answer {example.response[:20]!r})"
            )
        labels = [IGNORE_INDEX] * len(p_ids) + ids[len(p_ids) :]
        for start, end in self._earlier_spans(example, full, ids):
            labels[start:end] = ids[start:end]
        if len(ids) <= max_length:
            return Encoded(ids, labels)
        if overlong == "error":
            raise ValueError(
                f"example of {len(ids)} tokens is longer than encoding.max_length={max_length}; "
                "raise max_length or set encoding.overlong to drop or truncate"
            )
        if overlong == "drop" or len(p_ids) >= max_length:
            return None
        return Encoded(ids[:max_length], labels[:max_length], truncated=True)

    def _earlier_spans(self, example: Example, full: str, ids: list[int]) -> list[tuple[int, int]]:
        """Token ranges ``[start, end)`` of the earlier answers ``example.learn_history``
        marks: each answer, and the end-of-turn token if the template closes it with one.

        Raises:
            ValueError: the template renders an earlier turn differently inside the whole
                conversation (some drop earlier reasoning), or its tokens merge across the
                answer's edges, so the span cannot be found.
        """
        spans = []
        for turn, learn in enumerate(example.learn_history):
            if not learn:
                continue
            user, answer = example.history[turn]
            upto = replace(example, prompt=user, response=answer, history=example.history[:turn], learn_history=())
            head = self.render_prompt(upto)
            after = full[len(head) + len(answer):]
            text = answer + (self.stop_text if after.startswith(self.stop_text) else "")
            if not full.startswith(head + answer):
                raise ValueError(f"chat template: earlier turn {turn + 1} ({user[:30]!r}) renders differently inside the "
                                 "conversation, so its answer cannot be trained on; set data.context.learn_earlier: false")
            head_ids = self.tokenizer(head, add_special_tokens=False).input_ids
            upto_ids = self.tokenizer(head + text, add_special_tokens=False).input_ids
            start, end = len(head_ids), len(upto_ids)
            if ids[:end] != upto_ids or ids[:start] != head_ids:
                raise ValueError(f"tokenizer: earlier turn {turn + 1}'s answer {answer[:20]!r} merges with the text around "
                                 "it; set data.context.learn_earlier: false")
            spans.append((start, end))
        return spans

    def preview(self, example: Example, max_length: int = 10**9) -> str:
        """Full rendering with each supervised span wrapped in ⟦ ⟧."""
        enc = self.encode(example, max_length, "truncate")
        if enc is None:
            return "(dropped: the prompt alone is longer than encoding.max_length)"
        parts, start = [], 0
        learned = [lab != IGNORE_INDEX for lab in enc.labels]
        for i in range(1, len(learned) + 1):
            if i == len(learned) or learned[i] != learned[start]:
                text = self.tokenizer.decode(enc.input_ids[start:i])
                parts.append(f"⟦{text}⟧" if learned[start] else text)
                start = i
        return "".join(parts)
