"""tasktune.checkpoint: save -> load gives the trained model's logits, in PEFT's own format."""

from __future__ import annotations

import json

import peft
import pytest
import torch
from conftest import template_for
from safetensors.torch import load_file

from tasktune.adapters import get_adapter
from tasktune.checkpoint import load_adapter, save_adapter
from tasktune.config import AdapterConfig, DataConfig, EncodingConfig, TrainConfig
from tasktune.data import build_datasets
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_left
from tasktune.model import load_model, resolve_model
from tasktune.train import LoopState, make_accelerator, train_steps


def _base(folder):
    return load_model(resolve_model(str(folder)), torch.float32)


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("arch", ["llama", "glm", "glm4"])
def test_save_then_load_gives_identical_logits(arch, tiny_model_dirs, tokenizer, tmp_path):
    folder = tiny_model_dirs[arch]
    torch.manual_seed(0)
    model = get_adapter("lora").apply(_base(folder), AdapterConfig())
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    cfg = TrainConfig(max_steps=3, batch_size=4, lr=1e-2, warmup_steps=0, schedule="constant")
    stream = build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train
    list(train_steps(model, make_accelerator(cfg, 0), encoder, stream, cfg, EncodingConfig(), LoopState()))

    # Left-padded prompts: the padding path of generation is covered too.
    prompts = [encoder.prompt_ids(Example(prompt=p, response="")) for p in ("1+1=", "98+83=", "12345-678=")]
    batch = pad_left(prompts, tokenizer.pad_token_id)
    trained = _logits(model, batch)
    untuned = _logits(_base(folder), batch)
    assert not torch.allclose(trained, untuned, atol=1e-4)  # training changed the outputs

    out = save_adapter(model, "lora", tmp_path / "adapter")
    assert out == tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 16, 32)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    trained_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(tensors) == len(trained_names) and all("lora_" in k for k in tensors)  # only the adapter

    loaded = load_adapter(_base(folder), "lora", out)
    assert not loaded.training
    assert torch.allclose(_logits(loaded, batch), trained, atol=1e-6, rtol=0)

    # The stock PEFT loader reads the same folder.
    stock = peft.PeftModel.from_pretrained(_base(folder), str(out)).eval()
    assert torch.allclose(_logits(stock, batch), trained, atol=1e-6, rtol=0)


def test_load_from_a_folder_without_adapter(tiny_model_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no adapter in .*adapter_config\.json missing"):
        load_adapter(_base(tiny_model_dirs["llama"]), "lora", tmp_path)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match=r"adapter\.method: unknown method 'dora'; available: lora"):
        get_adapter("dora")


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "prefix"])
def test_a_checkpoint_holds_the_trained_tensors_once_and_resumes_from_them(method, tiny_model_dirs, tokenizer, tmp_path):
    from tasktune.checkpoint import load_checkpoint, save_checkpoint

    folder = tiny_model_dirs["llama"]
    adapter = get_adapter(method)
    torch.manual_seed(0)
    model = adapter.apply(_base(folder), AdapterConfig(method=method))
    cfg = TrainConfig(max_steps=2, batch_size=4, lr=1e-3, warmup_steps=0, schedule="constant")
    stream = build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train
    state = LoopState()
    list(train_steps(model, make_accelerator(cfg, 0), ChatEncoder(tokenizer, template="chatml"), stream, cfg,
                     EncodingConfig(), state))
    saved = save_checkpoint(tmp_path, model, method, state, {"note": 1})
    files = {p.name for p in saved.iterdir()}
    # Full fine-tuning's and freeze's own file is every trainable tensor by name: no second
    # copy. LoRA's (PEFT's names, without the adapter name) and prefix's (the encoder's
    # output) are not what a resume loads.
    assert ("trainable.safetensors" in files) == (method in ("lora", "prefix"))
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    torch.manual_seed(1)  # another initialisation, which the checkpoint must overwrite
    fresh = adapter.apply(_base(folder), AdapterConfig(method=method))
    loop, extra = load_checkpoint(saved, fresh)
    assert extra == {"note": 1} and loop.step == 2 and loop.optimizer_state["state"]
    now = dict(fresh.named_parameters())
    assert all(torch.equal(now[n], t) for n, t in trained.items())
