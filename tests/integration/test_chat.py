"""Drive `tasktune chat` through a pseudo-terminal, as a person would."""

from __future__ import annotations

import time

import pytest

from conftest import Terminal

pytestmark = pytest.mark.integration


def test_chat_streams_keeps_history_clears_and_exits(tiny_model_dirs):
    term = Terminal("chat", "--model", str(tiny_model_dirs["llama"]), "--max-new-tokens", "5")
    try:
        term.read_until(b"Ctrl-C stops an answer")
        term.read_until(b">>> ")
        term.send("1+1=\n")
        answer = term.read_until(b">>> ")
        assert answer.strip(), "no answer was printed"
        term.send("你好，世界\n")
        answer = term.read_until(b">>> ").decode("utf-8")  # strict: a broken multibyte char raises
        assert "\ufffd" not in answer
        term.send("clear\n")
        assert b"history cleared" in term.read_until(b">>> ")
        term.send("exit\n")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_chat_quits_on_ctrl_d(tiny_model_dirs):
    term = Terminal("chat", "--model", str(tiny_model_dirs["llama"]), "--max-new-tokens", "3")
    try:
        term.read_until(b">>> ")
        term.send("\x04")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_ctrl_c_stops_an_answer_and_the_chat_goes_on(tokenizer, tmp_path):
    # A deeper tiny model with a long context, so that an answer streams for seconds.
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=16,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # the end-of-turn token's logit is 0, below the top of 49k random ones: it never ends early
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("<|im_end|>")] = 0.0
    model.save_pretrained(tmp_path / "slow")
    tokenizer.save_pretrained(tmp_path / "slow")
    term = Terminal("chat", "--model", str(tmp_path / "slow"), "--max-new-tokens", "6000")
    try:
        term.read_until(b">>> ")
        term.send("Tell me a long story\n")
        term.read_until(b"story\r\n")  # the echo of the line
        time.sleep(1.0)  # the answer is under way (6000 tokens take far longer)
        term.send("\x03")
        stopped = term.read_until(b">>> ", timeout=60)
        assert b"[stopped]" in stopped
        term.send("exit\n")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
