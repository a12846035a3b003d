"""Every adapter method through the same interface: what trains, what is saved, and
that generation stays right (tiny random models of several architectures)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_distinct, template_for
from safetensors.torch import load_file

from tasktune.adapters import ADAPTERS, get_adapter
from tasktune.checkpoint import load_adapter, save_adapter
from tasktune.config import AdapterConfig, ConfigError, DataConfig, EncodingConfig, FreezeConfig, PrefixConfig, TrainConfig, load_config
from tasktune.data import build_datasets
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_left
from tasktune.generate import generate_batch
from tasktune.train import LoopState, make_accelerator, train_steps

METHODS = {
    "lora": AdapterConfig(method="lora"),
    "prefix": AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=4)),
    "prefix_projection": AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=4, prefix_projection=True, encoder_hidden_size=16)),
    "freeze": AdapterConfig(method="freeze", freeze=FreezeConfig(layers=1, modules="mlp")),
    "full": AdapterConfig(method="full"),
}
PROMPTS = ["1+1=", "98+83=", "12345-678=", "3-8=", "What is 12 times 12?", "口算: 7*6= 解:", "x", "99999999-1="]


def _base(folder):
    return load_distinct(folder)


def _train(model, encoder, steps: int = 2) -> None:
    cfg = TrainConfig(max_steps=steps, batch_size=4, lr=1e-3, warmup_steps=0, schedule="constant")
    stream = build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train
    list(train_steps(model, make_accelerator(cfg, 0), encoder, stream, cfg, EncodingConfig(), LoopState()))


def test_every_method_is_registered_and_configurable():
    assert {c.method for c in METHODS.values()} == set(ADAPTERS)  # every method is tested here
    for name in ADAPTERS:
        assert load_config(None, [f"adapter.method={name}"]).adapter.method == name
        module = get_adapter(name)
        assert all(callable(getattr(module, f)) for f in ("apply", "param_groups", "save", "load"))


@pytest.mark.parametrize("key", sorted(METHODS))
@pytest.mark.parametrize("arch", ["llama", "qwen2", "glm4"])
def test_a_step_changes_exactly_the_trainable_tensors(key, arch, tiny_model_dirs, tokenizer):
    method = METHODS[key].method
    model = get_adapter(method).apply(_base(tiny_model_dirs[arch]), METHODS[key])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if method == "freeze":  # the MLP of the last of 2 blocks, nothing else
        assert trainable and all(n.startswith("model.layers.1.mlp.") for n in trainable)
    if method == "full":
        assert trainable == set(before)
    _train(model, ChatEncoder(tokenizer, template=template_for(arch)), steps=1)
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    frozen_changed = changed - trainable
    assert not frozen_changed, sorted(frozen_changed)[:3]  # frozen tensors bit-identical
    # Every trainable matrix moved (LoRA's B starts at zero, so A moves from step 2 only).
    assert {n for n in trainable if after[n].dim() == 2 and ".lora_A." not in n} <= changed


@pytest.mark.parametrize("key", sorted(METHODS))
@pytest.mark.parametrize("arch", ["llama", "glm4"])
def test_save_load_gives_identical_logits_and_generation_batched_equals_unbatched(
    key, arch, tiny_model_dirs, tokenizer, tmp_path
):
    folder = tiny_model_dirs[arch]
    method = METHODS[key].method
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    model = get_adapter(method).apply(_base(folder), METHODS[key])
    _train(model, encoder)
    model.eval()
    prompts = [encoder.prompt_ids(Example(prompt=p, response="")) for p in PROMPTS]
    batch = pad_left(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        trained = model(**batch).logits
        untuned = _base(folder)(**batch).logits
    assert not torch.allclose(trained, untuned, atol=1e-4)  # training changed the outputs

    out = save_adapter(model, method, tmp_path / "adapter")
    saved = load_file(str(out / "adapter_model.safetensors"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if method == "prefix":  # the prefix keys and values themselves, in PEFT's format
        config = json.loads((out / "adapter_config.json").read_text())
        assert (config["peft_type"], config["num_virtual_tokens"]) == ("PREFIX_TUNING", 4)
        assert list(saved) == ["prompt_embeddings"]
        assert saved["prompt_embeddings"].shape == (4, config["num_layers"] * 2 * config["token_dim"])
    else:
        assert len(saved) == len(trainable)  # only what trains (tied tensors once)
    loaded = load_adapter(_base(folder), method, out)
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, trained, atol=1e-6, rtol=0)

    batched = generate_batch(loaded, tokenizer, prompts, encoder.stop_id, 8, batch_size=8)
    single = [generate_batch(loaded, tokenizer, [p], encoder.stop_id, 8)[0] for p in prompts]
    assert len(set(batched)) >= 4  # distinct outputs: the comparison has teeth
    assert batched == single


def _trainable_modules(folder, **freeze) -> set[str]:
    model = get_adapter("freeze").apply(_base(folder), AdapterConfig(method="freeze", freeze=FreezeConfig(**freeze)))
    return {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_picks_blocks_parts_and_extra_modules(tiny_model_dirs):
    qwen2 = tiny_model_dirs["qwen2"]  # untied output head
    assert _trainable_modules(qwen2, layers=1) == {f"model.layers.1.mlp.{m}" for m in ("gate_proj", "up_proj", "down_proj")}
    first = _trainable_modules(qwen2, layers=-1, modules="attention")
    assert first and all(n.startswith("model.layers.0.self_attn.") for n in first)
    every = _trainable_modules(qwen2, layers=2, modules="all")
    assert {"model.layers.0.input_layernorm", "model.layers.1.post_attention_layernorm"} <= every
    assert _trainable_modules(qwen2, layers=1, extra=["norm", "lm_head"]) - _trainable_modules(qwen2, layers=1) == {
        "model.norm",
        "lm_head",
    }
    # Llama's head is tied to the input embedding: training it trains that one tensor.
    tied = _trainable_modules(tiny_model_dirs["llama"], layers=1, extra=["lm_head"])
    assert "model.embed_tokens" in tied


def test_freeze_errors_name_the_field_and_the_valid_values(tiny_model_dirs):
    with pytest.raises(ConfigError, match=r"adapter\.freeze\.extra: unknown module\(s\) \['head'\]; valid: norm, lm_head"):
        load_config(None, ["adapter.method=freeze", "adapter.freeze.extra=[head]"])
    with pytest.raises(ConfigError, match=r"adapter\.freeze\.modules"):
        load_config(None, ["adapter.freeze.modules=ffn"])
    with pytest.raises(ConfigError, match=r"adapter\.freeze\.layers: .* not 0"):
        load_config(None, ["adapter.freeze.layers=0"])
    with pytest.raises(ValueError, match=r"adapter\.freeze\.layers=3: the model has 2 blocks"):
        _trainable_modules(tiny_model_dirs["llama"], layers=3)


def test_loading_another_methods_folder_is_an_error(tiny_model_dirs, tmp_path):
    model = get_adapter("freeze").apply(_base(tiny_model_dirs["llama"]), METHODS["freeze"])
    save_adapter(model, "freeze", tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["tasktune_method"] == "freeze"
    with pytest.raises(ValueError, match=r"saved by method 'freeze', not 'full'"):
        load_adapter(_base(tiny_model_dirs["llama"]), "full", tmp_path)
