"""tasktune.adapters.prefix: the prefix is in every call, generation reads it the way
training does, and stock PEFT reads the saved adapter."""

from __future__ import annotations

from itertools import islice

import peft
import pytest
import torch
from conftest import load_distinct, template_for

from tasktune.adapters import get_adapter
from tasktune.checkpoint import save_adapter
from tasktune.config import AdapterConfig, DataConfig, PrefixConfig
from tasktune.data import build_datasets
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_right
from tasktune.generate import generate_batch
from tasktune.train import supervised_loss_sum

PREFIX = AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=5))


def _base(folder):
    return load_distinct(folder).eval()


def _prefixed(folder, seed: int = 0):
    torch.manual_seed(seed)
    return get_adapter("prefix").apply(_base(folder), PREFIX).eval()


@torch.no_grad()
def _greedy_reference(model, prompt: list[int], n: int, stop_id: int) -> list[int]:
    """Argmax over a full forward of the whole sequence each step: no generate(), no
    reused cache; the prefix comes in through the same path as in training."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(n):
        token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        if token == stop_id:
            break
        out.append(token)
        ids.append(token)
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2", "glm"])
def test_generation_follows_the_prefix_as_training_sees_it(arch, tiny_model_dirs, tokenizer):
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    prompts = [encoder.prompt_ids(Example(prompt=p, response="")) for p in ("1+1=", "98+83=", "What is 12 times 12?")]
    model = _prefixed(tiny_model_dirs[arch])
    generated = generate_batch(model, tokenizer, prompts, encoder.stop_id, 6, batch_size=3)
    reference = [tokenizer.decode(_greedy_reference(model, p, 6, encoder.stop_id), skip_special_tokens=True).strip() for p in prompts]
    assert generated == reference
    plain = generate_batch(_base(tiny_model_dirs[arch]), tokenizer, prompts, encoder.stop_id, 6, batch_size=3)
    assert generated != plain  # the prefix changes what the model says


def test_stock_peft_reads_the_saved_prefix(tiny_model_dirs, tokenizer, tmp_path):
    folder = tiny_model_dirs["llama"]
    model = _prefixed(folder)
    save_adapter(model, "prefix", tmp_path)
    stock = peft.PeftModel.from_pretrained(_base(folder), str(tmp_path)).eval()
    ids = torch.tensor([ChatEncoder(tokenizer).prompt_ids(Example(prompt="98+83=", response=""))])
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        theirs = stock(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        plain = _base(folder)(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, plain, atol=1e-3)


def test_shared_prefix_loss_and_gradients_are_unchanged_with_a_prefix(tiny_model_dirs, tokenizer):
    encoder = ChatEncoder(tokenizer, system_prompt="You are a careful calculator. Answer with the number only.")
    stream = build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train
    encoded = [encoder.encode(ex, 512) for ex in islice(stream, 4)]
    batch = pad_right([e.input_ids for e in encoded], [e.labels for e in encoded], tokenizer.pad_token_id)

    def loss_and_grads(share: bool):
        model = _prefixed(tiny_model_dirs["llama"]).train()
        loss = supervised_loss_sum(model, batch, share_prefix=share)
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, plain_grads = loss_and_grads(False)
    shared, grads = loss_and_grads(True)
    assert torch.allclose(shared, plain, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == grads.keys() == {"prefix_encoder.embedding.weight"}
    for name, g in plain_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("arch", ["llama", "glm4"])
def test_token_init_starts_as_if_real_tokens_preceded_every_sequence(arch, tiny_model_dirs, tokenizer):
    model = _prefixed(tiny_model_dirs[arch])  # init: tokens (the default)
    ids = torch.randint(0, model.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(0))
    prompt = torch.tensor([ChatEncoder(tokenizer, template=template_for(arch)).prompt_ids(Example(prompt="98+83=", response=""))])
    with torch.no_grad():
        ours = model(input_ids=prompt).logits
        reference = _base(tiny_model_dirs[arch])(input_ids=torch.cat([ids, prompt], 1)).logits[:, 5:]
        random_init = get_adapter("prefix").apply(
            _base(tiny_model_dirs[arch]), AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=5, init="random"))
        )(input_ids=prompt).logits
    assert torch.allclose(ours, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(random_init, reference, atol=1e-3)
