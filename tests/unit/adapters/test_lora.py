"""tasktune.adapters.lora: which blocks and modules get adapters."""

from __future__ import annotations

import pytest
import torch

from tasktune.adapters import get_adapter
from tasktune.config import AdapterConfig, LoraConfig
from tasktune.model import load_model, resolve_model


def _adapted_blocks(model) -> dict[int, set[str]]:
    """block index -> names of the modules that carry a trainable LoRA matrix."""
    out: dict[int, set[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            parts = name.split(".")
            i = parts.index("layers")
            out.setdefault(int(parts[i + 1]), set()).add(parts[parts.index("lora_A" if "lora_A" in parts else "lora_B") - 1])
    return out


def _apply(folder, **lora):
    base = load_model(resolve_model(str(folder)), torch.float32)
    return get_adapter("lora").apply(base, AdapterConfig(lora=LoraConfig(**lora)))


@pytest.mark.parametrize("arch", ["llama", "glm4"])
def test_layers_picks_the_last_blocks_or_a_list(arch, tiny_model_dirs):
    every = _adapted_blocks(_apply(tiny_model_dirs[arch]))
    n = len(every)
    assert n >= 2 and len({frozenset(v) for v in every.values()}) == 1
    linear = next(iter(every.values()))
    assert {"q_proj", "o_proj", "down_proj"} <= linear  # "all-linear": attention and MLP

    last = _adapted_blocks(_apply(tiny_model_dirs[arch], layers=1))
    assert last == {n - 1: linear}  # "all-linear" still means every linear layer
    listed = _adapted_blocks(_apply(tiny_model_dirs[arch], layers=[0], target_modules=["q_proj"]))
    assert listed == {0: {"q_proj"}}


def test_layers_beyond_the_model_is_an_error_naming_the_count(tiny_model_dirs):
    with pytest.raises(ValueError, match=r"adapter.lora.layers=\[0, 7\]: the model has \d+ blocks"):
        _apply(tiny_model_dirs["llama"], layers=[0, 7])
    with pytest.raises(ValueError, match="the model has"):
        _apply(tiny_model_dirs["llama"], layers=50)
