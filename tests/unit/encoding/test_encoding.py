"""tasktune.encoding: labels checked against the tokenizer's own chat template."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tasktune.constants import IGNORE_INDEX
from tasktune.data.example import Example
from tasktune.encoding import TEMPLATES, ChatEncoder, get_template, pad_left, pad_right

DEFAULT_SYSTEM = "You are a helpful AI assistant"  # SmolLM2's injected default
ARITH = Example(prompt="98+83=", response="181")
HISTORY = Example(prompt="And 3-8=", response="-5", history=(("1+1=", "2"), ("2+2=", "4")))


def _msgs(example: Example, system: str | None) -> list[dict[str, str]]:
    """The conversation written out by hand (independent of ChatEncoder.messages)."""
    msgs = [] if system is None else [{"role": "system", "content": system}]
    for user, assistant in example.history:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return msgs + [{"role": "user", "content": example.prompt}]


def _reference_prompt_ids(tokenizer, example: Example, system: str | None, template: str | None = None) -> list[int]:
    return tokenizer.apply_chat_template(
        _msgs(example, system), chat_template=template, tokenize=True, add_generation_prompt=True
    )["input_ids"]


@pytest.mark.parametrize("example", [ARITH, HISTORY, Example(prompt="翻译：猫", response="cat\n多行 answer")], ids=["arith", "history", "zh"])
@pytest.mark.parametrize("system", ["", None, "Answer with a number."], ids=["empty", "none", "custom"])
def test_labels_mask_exactly_the_templates_prompt(tokenizer, example, system):
    enc = ChatEncoder(tokenizer, system_prompt=system)
    out = enc.encode(example, max_length=512)
    ref_prompt = _reference_prompt_ids(tokenizer, example, system)
    n = len(ref_prompt)
    assert len(out.input_ids) == len(out.labels)
    assert out.input_ids[:n] == ref_prompt
    assert out.labels[:n] == [IGNORE_INDEX] * n
    assert out.labels[n:] == out.input_ids[n:]  # aligned with the inputs, never shifted
    assert tokenizer.decode(out.input_ids[n:]) == example.response + "<|im_end|>"
    # The whole example is the template's full rendering up to the end-of-turn token.
    full = tokenizer.apply_chat_template(
        _msgs(example, system) + [{"role": "assistant", "content": example.response}], tokenize=False
    )
    assert full == tokenizer.decode(out.input_ids) + "\n"
    assert out.truncated is False


def test_stop_token_is_chatml_end_of_turn(tokenizer):
    enc = ChatEncoder(tokenizer)
    assert enc.stop_text == "<|im_end|>"
    assert enc.stop_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_empty_system_prompt_suppresses_the_template_default(tokenizer):
    text = ChatEncoder(tokenizer, system_prompt="").render_prompt(ARITH)
    assert text == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n98+83=<|im_end|>\n<|im_start|>assistant\n"
    assert DEFAULT_SYSTEM not in text


def test_none_system_prompt_lets_the_template_default_apply(tokenizer):
    text = ChatEncoder(tokenizer, system_prompt=None).render_prompt(ARITH)
    assert text.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}")
    assert text == tokenizer.apply_chat_template(_msgs(ARITH, None), tokenize=False, add_generation_prompt=True)


def test_example_system_overrides_the_config_one(tokenizer):
    text = ChatEncoder(tokenizer, system_prompt="config").render_prompt(Example(prompt="q", response="a", system="row"))
    assert text.startswith("<|im_start|>system\nrow<|im_end|>")
    assert "config" not in text


def test_history_is_rendered_but_not_supervised(tokenizer):
    enc = ChatEncoder(tokenizer)
    out = enc.encode(HISTORY, 512)
    first = next(i for i, lab in enumerate(out.labels) if lab != IGNORE_INDEX)
    head = tokenizer.decode(out.input_ids[:first])
    assert "<|im_start|>user\n1+1=<|im_end|>\n<|im_start|>assistant\n2<|im_end|>" in head
    assert "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3-8=" in head
    assert tokenizer.decode([t for t in out.labels if t != IGNORE_INDEX]) == "-5<|im_end|>"


def _spans(tokenizer, out) -> list[str]:
    """The supervised spans of an encoded row, decoded, in order."""
    spans, current = [], []
    for tok, lab in zip(out.input_ids, out.labels):
        if lab != IGNORE_INDEX:
            assert lab == tok  # labels stay aligned with the inputs, never shifted
            current.append(tok)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans + ([tokenizer.decode(current)] if current else [])


LEARNED = Example(prompt="And 3-8=", response="-5", history=(("1+1=", "2"), ("Hello!", "Hi!"), ("2+2=", "4")),
                  learn_history=(True, False, True))


@pytest.mark.parametrize("system", ["", None, "Answer with a number."], ids=["empty", "none", "custom"])
def test_earlier_answers_marked_learned_are_supervised_with_their_end_of_turn(tokenizer, system):
    enc = ChatEncoder(tokenizer, system_prompt=system)
    out = enc.encode(LEARNED, 512)
    assert _spans(tokenizer, out) == ["2<|im_end|>", "4<|im_end|>", "-5<|im_end|>"]
    # Each learned answer starts right where the template's prompt for that turn ends.
    upto = Example(prompt="2+2=", response="4", history=LEARNED.history[:2])
    n = len(_reference_prompt_ids(tokenizer, upto, system))
    assert out.labels[n - 1] == IGNORE_INDEX and out.labels[n] == out.input_ids[n]
    assert out.input_ids == enc.encode(replace(LEARNED, learn_history=()), 512).input_ids  # same tokens either way


def test_chatglm_earlier_answers_are_learned_without_the_eos_it_writes_only_last(tokenizer):
    out = ChatEncoder(tokenizer, template="chatglm").encode(LEARNED, 512)
    assert _spans(tokenizer, out) == ["2", "4", "-5" + tokenizer.eos_token]


def test_a_template_that_rewrites_earlier_answers_cannot_learn_them(tokenizer):
    # Like templates that drop earlier reasoning: the earlier answer is not rendered as written.
    template = ("{%- for m in messages -%}{%- if m['role'] == 'assistant' and not loop.last -%}"
                "{{ '<|im_start|>assistant\n(earlier)<|im_end|>\n' }}{%- else -%}"
                "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endif -%}{%- endfor -%}"
                "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}")
    tokenizer_template = type(tokenizer.chat_template)(template)
    enc = ChatEncoder(tokenizer, system_prompt=None)
    enc.template = tokenizer_template
    with pytest.raises(ValueError, match="learn_earlier"):
        enc.encode(LEARNED, 512)


def test_preview_marks_every_supervised_span(tokenizer):
    shown = ChatEncoder(tokenizer).preview(LEARNED)
    assert "assistant\n⟦2<|im_end|>⟧" in shown and "assistant\nHi!<|im_end|>" in shown
    assert shown.endswith("assistant\n⟦-5<|im_end|>⟧")


def test_chatglm_template(tokenizer):
    enc = ChatEncoder(tokenizer, template="chatglm")
    assert enc.stop_text == tokenizer.eos_token  # chatglm closes the answer with EOS
    assert enc.render_prompt(ARITH) == "[Round 0]\n问：98+83=\n答："
    assert enc.render_prompt(HISTORY) == "[Round 0]\n问：1+1=\n答：2\n[Round 1]\n问：2+2=\n答：4\n[Round 2]\n问：And 3-8=\n答："
    out = enc.encode(HISTORY, 512)
    n = len(_reference_prompt_ids(tokenizer, HISTORY, "", TEMPLATES["chatglm"]))
    assert out.labels[:n] == [IGNORE_INDEX] * n
    assert tokenizer.decode(out.input_ids[n:]) == "-5" + tokenizer.eos_token
    # A non-empty system message is a plain first line.
    sys_enc = ChatEncoder(tokenizer, template="chatglm", system_prompt="只写数字。")
    assert sys_enc.render_prompt(ARITH) == "只写数字。\n[Round 0]\n问：98+83=\n答："


def test_plain_template_is_prompt_then_answer_then_eos(tokenizer):
    enc = ChatEncoder(tokenizer, template="plain", system_prompt=None)
    assert enc.stop_text == tokenizer.eos_token
    assert enc.render_prompt(ARITH) == "98+83=\n"
    eos = tokenizer.eos_token
    assert enc.render_prompt(HISTORY) == f"1+1=\n2{eos}2+2=\n4{eos}And 3-8=\n"
    enc.encode(HISTORY, 512)  # "=-" would be one token; the newline keeps the prompt a token prefix
    out = enc.encode(ARITH, 512)
    n = len(tokenizer("98+83=\n", add_special_tokens=False).input_ids)
    assert out.labels[:n] == [IGNORE_INDEX] * n and out.input_ids[n:] == out.labels[n:]
    assert tokenizer.decode(out.input_ids[n:]) == "181" + tokenizer.eos_token
    assert len(out.input_ids) < len(ChatEncoder(tokenizer, template="chatml", system_prompt=None).encode(ARITH, 512).input_ids)
    assert ChatEncoder(tokenizer, template="plain", system_prompt="Be brief.").render_prompt(ARITH) == "Be brief.\n98+83=\n"


def test_unknown_template_and_missing_template(tokenizer, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown template 'glm'; built-in: chatglm, chatml, plain"):
        get_template("glm")
    monkeypatch.setattr(tokenizer, "chat_template", None)
    with pytest.raises(ValueError, match="the tokenizer has no chat template; set encoding.template"):
        ChatEncoder(tokenizer)


# The generation prompt says "ASSISTANT>" but the full rendering says "assistant: ",
# so the prompt is not a prefix of the conversation and labels would be misaligned.
BROKEN = (
    "{%- for m in messages -%}{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT>{%- endif -%}"
)


def test_template_whose_prompt_is_not_a_prefix_is_rejected(tokenizer, monkeypatch):
    monkeypatch.setitem(TEMPLATES, "broken", BROKEN)
    with pytest.raises(ValueError, match="does not render the answer right after the generation prompt"):
        ChatEncoder(tokenizer, template="broken")
    enc = ChatEncoder(tokenizer)
    enc.template = BROKEN
    with pytest.raises(ValueError, match="the prompt rendering is not a prefix of the full conversation"):
        enc.encode(ARITH, 512)


def test_overlong_examples(tokenizer):
    enc = ChatEncoder(tokenizer)
    long = Example(prompt="1+1=", response="1" * 30)
    whole = enc.encode(long, 10**6)
    n_prompt = whole.labels.count(IGNORE_INDEX)
    limit = n_prompt + 5
    assert len(whole.input_ids) > limit
    assert enc.encode(long, limit, "drop") is None
    cut = enc.encode(long, limit, "truncate")
    assert cut.truncated is True
    assert len(cut.input_ids) == len(cut.labels) == limit
    assert cut.input_ids == whole.input_ids[:limit] and cut.labels == whole.labels[:limit]
    with pytest.raises(ValueError, match=rf"example of {len(whole.input_ids)} tokens is longer than encoding.max_length={limit}"):
        enc.encode(long, limit, "error")
    # A prompt that alone fills the limit leaves nothing to learn: dropped even with truncate.
    assert enc.encode(long, n_prompt, "truncate") is None
    assert enc.encode(long, len(whole.input_ids), "error") == whole  # exactly at the limit fits


def test_preview_marks_the_supervised_span(tokenizer):
    assert ChatEncoder(tokenizer).preview(ARITH).endswith("<|im_start|>assistant\n⟦181<|im_end|>⟧")


def test_pad_right():
    batch = pad_right([[5, 6, 7], [8]], [[IGNORE_INDEX, 6, 7], [8]], pad_id=0)
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7], [8, 0, 0]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert torch.equal(batch["labels"], torch.tensor([[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]))
    assert all(t.dtype == torch.long for t in batch.values())


def test_pad_left():
    batch = pad_left([[5, 6, 7], [8], [9, 10]], pad_id=2)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7], [2, 2, 8], [2, 9, 10]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1]]))
    assert batch["input_ids"].dtype == torch.long
