"""train.packing: rows end to end in one sequence compute what padded rows compute."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

import pytest
import torch
from conftest import template_for

from tasktune.adapters import get_adapter
from tasktune.config import AdapterConfig, DataConfig, EncodingConfig, TrainConfig
from tasktune.constants import IGNORE_INDEX
from tasktune.data import build_datasets
from tasktune.encoding import ChatEncoder, pack, pad_right
from tasktune.model import load_model, resolve_model
from tasktune.train import LoopState, make_accelerator, supervised_loss_sum, train_steps
from tasktune.train.loop import packing_matches

CFG = TrainConfig(max_steps=2, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=0, schedule="constant")


def _stream():
    return build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train


def _encoded(tokenizer, arch, n: int):
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    return encoder, [encoder.encode(ex, 512) for ex in islice(_stream(), n)]


def _model(folder, method: str = "lora", dtype=torch.float32):
    base = load_model(resolve_model(str(folder)), dtype)
    torch.manual_seed(0)
    model = get_adapter(method).apply(base, AdapterConfig(method=method))
    with torch.no_grad():  # a non-trivial adapter, so A gets gradients too
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.1)
    return model


def test_pack_restarts_positions_and_never_targets_the_next_rows_first_token():
    packed = pack([[5, 6, 7], [8, 9]], [[IGNORE_INDEX, 6, 7], [8, 9]])
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # 8 is row 2's first token: the last token of row 1 must not learn to predict it.
    assert packed["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert "attention_mask" not in packed


@pytest.mark.parametrize("arch", ["llama", "qwen2", "glm", "glm4"])
def test_packed_rows_give_the_loss_and_gradients_of_padded_rows(arch, tiny_model_dirs, tokenizer):
    _, encoded = _encoded(tokenizer, arch, 5)
    padded = pad_right([e.input_ids for e in encoded], [e.labels for e in encoded], tokenizer.pad_token_id)
    assert padded["attention_mask"].min() == 0  # rows of different lengths: padding to remove
    packed = pack([e.input_ids for e in encoded], [e.labels for e in encoded])

    def loss_and_grads(batch):
        model = _model(tiny_model_dirs[arch])
        loss = supervised_loss_sum(model, batch)
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, plain_grads = loss_and_grads(padded)
    ours, grads = loss_and_grads(packed)
    assert torch.allclose(ours, plain, rtol=1e-5, atol=1e-5)
    for name, g in plain_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), name
    # Without restarting positions the rows would attend to each other: a different loss.
    joined = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
    with torch.no_grad():
        leaky = supervised_loss_sum(_model(tiny_model_dirs[arch]), joined)
    assert not torch.allclose(leaky, plain, rtol=1e-5, atol=1e-5)  # beyond the tolerance the equality holds to


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_packed_training_takes_the_padded_steps_with_no_padding(grad_accum, tiny_model_dirs, tokenizer):
    def run(packing: bool):
        model = _model(tiny_model_dirs["llama"], dtype=torch.float64)
        encoder = ChatEncoder(tokenizer, template=template_for("llama"))
        cfg = replace(CFG, packing=packing, grad_accum=grad_accum)
        infos = list(train_steps(model, make_accelerator(cfg, 0), encoder, _stream(), cfg, EncodingConfig(), LoopState()))
        return infos, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    padded_infos, padded_weights = run(False)
    packed_infos, packed_weights = run(True)
    for name, w in padded_weights.items():
        assert torch.allclose(packed_weights[name], w, atol=1e-6, rtol=0), name
    for a, b in zip(padded_infos, packed_infos, strict=True):
        assert b.loss == pytest.approx(a.loss, abs=1e-6)
        assert b.supervised_tokens == a.supervised_tokens
    if grad_accum == 1:  # (sorted into 2 micro-batches, these rows happen to need no padding)
        assert padded_infos[-1].padding_tokens > 0
    assert packed_infos[-1].padding_tokens == 0
    # Every real token is computed but the closing ones of each pack's last row (they
    # predict nothing), and nothing else.
    last = packed_infos[-1]
    packs = last.step * grad_accum
    assert last.tokens - 2 * packs <= last.computed_tokens < last.tokens


def test_the_check_runs_once_per_run(tiny_model_dirs, tokenizer, monkeypatch):
    import tasktune.train.loop as loop

    calls = []
    real = loop.packing_matches
    monkeypatch.setattr(loop, "packing_matches", lambda *a, **k: calls.append(1) or real(*a, **k))
    encoder = ChatEncoder(tokenizer, template=template_for("llama"))
    cfg = replace(CFG, packing=True, max_steps=3)
    infos = list(train_steps(_model(tiny_model_dirs["llama"]), make_accelerator(cfg, 0), encoder, _stream(), cfg,
                             EncodingConfig(), LoopState()))
    assert len(infos) == 3 and len(calls) == 1


def test_a_prefix_adapter_is_caught_by_the_check_and_trains_padded(tiny_model_dirs, tokenizer, capsys):
    base = load_model(resolve_model(str(tiny_model_dirs["llama"])), torch.float32)
    torch.manual_seed(0)
    model = get_adapter("prefix").apply(base, AdapterConfig(method="prefix"))
    _, encoded = _encoded(tokenizer, "llama", 4)
    # The prefix's cache makes transformers build an ordinary causal mask: rows see each other.
    assert not packing_matches(model, encoded, tokenizer.pad_token_id)
    assert packing_matches(_model(tiny_model_dirs["llama"]), encoded, tokenizer.pad_token_id)
    encoder = ChatEncoder(tokenizer, template=template_for("llama"))
    cfg = replace(CFG, packing=True, max_steps=1, grad_accum=1)
    infos = list(train_steps(model, make_accelerator(cfg, 0), encoder, _stream(), cfg, EncodingConfig(), LoopState()))
    assert infos[0].padding_tokens > 0  # it trained padded
    said = capsys.readouterr()
    assert "trains padded" in said.out + said.err
