"""tasktune.generate: batched left-padded greedy decoding equals one-at-a-time decoding,
and both equal a plain argmax loop written here."""

from __future__ import annotations

import pytest
import torch
from conftest import load_distinct, template_for

from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.generate import generate_batch, stream_generate

# Ten prompts of different lengths: with batch_size 8, two left-padded batches.
PROMPTS = [
    "1+1=",
    "98+83=",
    "12345+67890=",
    "3-8=",
    "What is 12 times 12? Answer with a number only.",
    "口算: 7*6= 解:",
    "0/5=",
    "Please add these: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "x",
    "99999999-1=",
]
CAP = 10

_MODELS: dict[str, torch.nn.Module] = {}


@pytest.fixture
def model(arch, tiny_model_dirs):
    """The tiny model with distinct greedy outputs per prompt (conftest.load_distinct)."""
    if arch not in _MODELS:
        _MODELS[arch] = load_distinct(tiny_model_dirs[arch]).eval()
    return _MODELS[arch]


@pytest.fixture
def prompts(arch, tokenizer) -> list[list[int]]:
    enc = ChatEncoder(tokenizer, template=template_for(arch))
    return [enc.prompt_ids(Example(prompt=p, response="")) for p in PROMPTS]


@pytest.fixture
def stop_id(arch, tokenizer) -> int:
    return ChatEncoder(tokenizer, template=template_for(arch)).stop_id


@torch.no_grad()
def _greedy_reference(model, prompt: list[int], n: int, stop_id: int | None) -> list[int]:
    """Argmax loop on the whole sequence each step: no cache, no padding, no generate()."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(n):
        token = int(model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1].argmax())
        if token == stop_id:
            break
        out.append(token)
        ids.append(token)
    return out


def test_batched_left_padded_equals_unbatched(model, tokenizer, prompts, stop_id):
    assert len({len(p) for p in prompts}) >= 8  # the batches really are padded
    batched = generate_batch(model, tokenizer, prompts, stop_id, CAP, batch_size=8)
    assert len(set(batched)) >= 8 and all(batched)  # distinct, non-empty: the check has teeth
    alone = generate_batch(model, tokenizer, prompts, stop_id, CAP, batch_size=1)
    assert batched == alone
    reference = [
        tokenizer.decode(_greedy_reference(model, p, CAP, stop_id), skip_special_tokens=True).strip() for p in prompts
    ]
    assert batched == reference


def test_stops_at_stop_id_and_respects_the_cap(model, tokenizer, prompts):
    # A prompt whose greedy continuation has a token at position k >= 1 not seen before it
    # (random models often repeat one token).
    for prompt in prompts:
        ref = _greedy_reference(model, prompt, CAP, stop_id=None)
        assert len(ref) == CAP
        k = max(i for i, t in enumerate(ref) if t not in ref[:i])
        if k >= 1:
            break
    else:
        pytest.fail("every greedy continuation repeats one token; pick other prompts")
    # Stopping on ref[k]: nothing from it on is returned, even when the stop token is an
    # ordinary (non-special) token that decoding would otherwise keep.
    got = generate_batch(model, tokenizer, [prompt], ref[k], CAP)
    assert got == [tokenizer.decode(ref[:k], skip_special_tokens=True).strip()]
    # A stop token never produced: exactly max_new_tokens tokens come out.
    never = next(t for t in range(3, 1000) if t not in ref)
    for cap in (1, 3, CAP):
        got = generate_batch(model, tokenizer, [prompt, prompts[0]], never, cap)
        assert got[0] == tokenizer.decode(ref[:cap], skip_special_tokens=True).strip()
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        generate_batch(model, tokenizer, [prompt], never, 0)


def test_stream_pieces_equal_batch_output(model, tokenizer, prompts, stop_id):
    for prompt in (prompts[1], prompts[5]):
        pieces = list(stream_generate(model, tokenizer, prompt, stop_id, CAP))
        assert all(pieces)  # no empty pieces
        [batch] = generate_batch(model, tokenizer, [prompt], stop_id, CAP)
        assert "".join(pieces).strip() == batch
        ref = _greedy_reference(model, prompt, CAP, stop_id)
        assert "".join(pieces) == tokenizer.decode(ref, skip_special_tokens=True)


def test_generate_restores_training_mode(model, tokenizer, prompts, stop_id):
    model.train()
    try:
        generate_batch(model, tokenizer, prompts[:2], stop_id, 2)
        assert model.training
    finally:
        model.eval()


def test_sampling_is_opt_in_and_reproducible_by_seed(model, tokenizer, prompts, stop_id):
    from tasktune.config import GenerateConfig

    greedy = generate_batch(model, tokenizer, prompts, stop_id, 8, batch_size=2)
    assert generate_batch(model, tokenizer, prompts, stop_id, 8, batch_size=2, sampling=GenerateConfig()) == greedy

    def sample(seed: int) -> list[str]:
        cfg = GenerateConfig(do_sample=True, temperature=1.5, top_p=1.0, seed=seed)
        return generate_batch(model, tokenizer, prompts, stop_id, 8, batch_size=2, sampling=cfg)

    first = sample(0)
    assert sample(0) == first  # the same seed, the same answers
    assert first != greedy and sample(1) != first  # it really samples


def test_completions_count_tokens_and_honour_per_row_caps(model, tokenizer, prompts, stop_id):
    from tasktune.generate import generate_completions

    caps = [1, 2, 3, 4, 5, 6, 7, 8, 9, CAP]
    done = generate_completions(model, tokenizer, prompts, stop_id, caps, batch_size=4)
    for prompt, cap, c in zip(prompts, caps, done):
        alone = _greedy_reference(model, prompt, cap, stop_id)  # stops before the stop token
        assert c.text == tokenizer.decode(alone, skip_special_tokens=True).strip()
        if c.finish_reason == "stop":
            assert c.tokens == len(alone) + 1 <= cap
        else:
            assert c.finish_reason == "length" and c.tokens == len(alone) == cap
