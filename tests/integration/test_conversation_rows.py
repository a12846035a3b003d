"""The earlier-turn suite can fail, and training rows in conversations mend it.

A tiny model learns a file task, "the digit in the message" (`K,Q,7,Z` -> `7`), once
from lone rows and once with a share of its rows asked after earlier turns. The lone-row
model finds a digit by what it is, and after earlier turns (whose messages and answers
hold digits too) it takes the wrong one: its turns_3 figure falls far below its
held-out one. The model trained in conversations keeps it.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from tasktune.config import load_config
from tasktune.recipes.finetune import finetune

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hidden64(tokenizer, tmp_path_factory):
    """A 2-layer Llama of hidden size 64 (32 learns this task too slowly to test)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.pad_token_id, bos_token_id=1,
                         tie_word_embeddings=True)
    torch.manual_seed(100)
    folder = tmp_path_factory.mktemp("hidden64")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _rows(path, n: int, seed: int) -> None:
    """``n`` rows `K,Q,7,Z` -> `7`: 3 to 6 letters, one of them replaced by a digit."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            items = [chr(65 + rng.randrange(26)) for _ in range(rng.randint(3, 6))]
            digit = str(rng.randrange(10))
            items[rng.randrange(len(items))] = digit
            f.write(json.dumps({"instruction": ",".join(items), "output": digit}) + "\n")


def _train(model, rows, out, share: float) -> tuple[float, float]:
    cfg = load_config(None, [
        f"model={model}", "data.task=file", f"data.file.path={rows}", f"output_dir={out}",
        "adapter.method=full", "train.max_steps=300", "train.batch_size=16", "train.lr=1e-2", "train.warmup_steps=10",
        "train.schedule=linear", "train.min_lr_ratio=0", "train.max_minutes=null", "train.log_every=1000",
        "eval.max_examples=80", "eval.base=false", "eval.suites=[turns_3]",
        f"data.context.share={share}", "data.context.plain_share=0",
    ])
    metrics = finetune(cfg, overwrite=True)
    return metrics["final"]["exact_match"], metrics["suites"]["turns_3"]["exact_match"]


@pytest.mark.slow  # two training runs that must learn: 2.5 minutes on a 2-core Zen 1
def test_the_earlier_turn_suite_falls_without_conversation_rows(hidden64, tmp_path):
    _rows(tmp_path / "rows.jsonl", 3000, 0)
    lone = _train(hidden64, tmp_path / "rows.jsonl", tmp_path / "lone", 0.0)
    talked = _train(hidden64, tmp_path / "rows.jsonl", tmp_path / "talked", 0.5)
    print(f"held-out / after 3 earlier turns: lone rows {lone[0]:.0%} / {lone[1]:.0%}, "
          f"with conversation rows {talked[0]:.0%} / {talked[1]:.0%}")
    # The suite fails a model that learned from lone rows: it answers alone, not after earlier turns.
    assert lone[0] >= 0.35 and lone[1] <= lone[0] - 0.15
    # Rows in conversations: the answers hold after earlier turns.
    assert talked[1] >= talked[0] - 0.1 and talked[1] >= lone[1] + 0.25
