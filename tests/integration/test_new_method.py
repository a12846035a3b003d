"""A fifth fine-tuning method touches only its own module and the registry: a toy method
registered here (train the final norm's weight, nothing else) runs through train, eval,
predict and export, in-process through the CLI, on the tiny Llama."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

from tasktune.adapters import ADAPTERS, weights
from tasktune.cli.main import main

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arith_lora.yaml"


def _norm(model) -> torch.nn.Parameter:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.norm.weight


def _toy() -> types.ModuleType:
    """A method module: the final RMSNorm's weight trains, saved by its parameter name."""
    toy = types.ModuleType("toy_norm")
    toy.TRAINS_BASE, toy.SAVES_TRAINABLE, toy.SHARES_BASE = True, True, False

    def apply(model, cfg):
        model.requires_grad_(False)
        _norm(model).requires_grad_(True)
        return model

    def save(model, directory):
        weights.save_trained(model, directory, {"tasktune_method": "toy"})

    def load(model, directory):
        return weights.load_trained(model, directory, "toy")

    toy.apply, toy.save, toy.load = apply, save, load
    toy.param_groups = lambda model, cfg: weights.trainable_groups(model)
    toy.merged, toy.load_named = weights.merged_as_is, weights.no_named_load
    return toy


def test_a_registered_toy_method_trains_evaluates_predicts_and_exports(tiny_model_dirs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ADAPTERS, "toy", _toy())
    monkeypatch.setenv("TQDM_DISABLE", "1")
    base = tiny_model_dirs["llama"]
    run = tmp_path / "toy_run"
    assert main(["train", str(CONFIG), f"model={base}", f"output_dir={run}", "adapter.method=toy", "train.max_steps=3",
                 "train.batch_size=4", "train.lr=0.05", "train.warmup_steps=0", "eval.max_examples=6", "eval.every=0"]) == 0
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 3
    saved = weights.load_trained(_toy_base(base), run / "adapter", "toy")
    from transformers import AutoModelForCausalLM

    untouched = AutoModelForCausalLM.from_pretrained(base)
    assert not torch.equal(_norm(saved), _norm(untouched))  # the toy method trained its tensor
    assert main(["eval", "--run", str(run)]) == 0
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "1+1="}\n{"prompt": "23+45="}\n')
    assert main(["predict", "--run", str(run), "--input", str(prompts), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "merged")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.equal(_norm(exported), _norm(saved))  # export carries the trained tensor
    with pytest.raises(ValueError, match="unknown method 'nope'; available: lora, prefix, freeze, full, toy"):
        from tasktune.adapters import get_adapter

        get_adapter("nope")


def _toy_base(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)
