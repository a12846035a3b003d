"""tasktune.model.memory: parameter counts from a config, and the formula against the
ChatGLM-6B tutorial's published table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasktune.model import load_model, resolve_model
from tasktune.model.memory import CUDA_OVERHEAD_GIB, count_parameters, estimate_gib
from tasktune.recipes.memory import MemorySettings, load_model_config, memory_table

CHATGLM_6B = Path(__file__).resolve().parents[3] / "configs" / "models" / "chatglm-6b.json"
# The tutorial's table (GB): FP16 / INT8 / INT4 x inference / P-Tuning v2 at batch 1.
TUTORIAL = {"fp16": (13, 14), "int8": (8, 9), "int4": (6, 7)}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "glm4"])
def test_counts_match_the_loaded_model(arch, tiny_model_dirs):
    model = load_model(resolve_model(str(tiny_model_dirs[arch])), torch.float32)
    counts = count_parameters(model.config)
    assert counts.total == sum(p.numel() for p in model.parameters())  # tied tensors once
    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    assert counts.block_linear == linear


def test_chatglm_6b_estimates_are_within_20_percent_of_the_tutorial():
    config, local = load_model_config(str(CHATGLM_6B))
    assert not local
    counts = count_parameters(config)
    assert 6.1e9 < counts.total < 6.3e9  # ChatGLM-6B: 6.17B
    for weights, (infer, tune) in TUTORIAL.items():
        got_infer = estimate_gib(counts, weights, "inference", 1, 512, CUDA_OVERHEAD_GIB)
        got_tune = estimate_gib(counts, weights, "tuning", 1, 128, CUDA_OVERHEAD_GIB, pre_seq_len=128)
        assert abs(got_infer - infer) <= 0.2 * infer, (weights, got_infer)
        assert abs(got_tune - tune) <= 0.2 * tune, (weights, got_tune)


def test_table_of_a_config_file_is_estimates_only():
    table = memory_table(str(CHATGLM_6B), MemorySettings())
    assert "| FP16 | 13.0 GB est. (GPU) |" in table and "measured" not in table
    assert "P-Tuning v2 (pre_seq_len 128), batch 1 x 128 tokens" in table


def test_bad_config_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="model config not found"):
        load_model_config(str(tmp_path / "nope.json"))
    (tmp_path / "c.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ValueError, match="no model_type"):
        load_model_config(str(tmp_path / "c.json"))
