"""tasktune.generate.continuous: rows that join a running batch at different steps, and
leave it at different steps, get the answers each would get alone (greedy: the plain
argmax loop of test_generate); a sampled row's seed holds whatever shares its batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import load_distinct, template_for
from test_generate import CAP, PROMPTS, _greedy_reference

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.generate.continuous import Row, RunningBatch, supports

_MODELS: dict[str, torch.nn.Module] = {}


@pytest.fixture
def model(arch, tiny_model_dirs):
    if arch not in _MODELS:
        _MODELS[arch] = load_distinct(tiny_model_dirs[arch]).eval()
    return _MODELS[arch]


@pytest.fixture
def encoder(arch, tokenizer) -> ChatEncoder:
    return ChatEncoder(tokenizer, template=template_for(arch))


def _ids(encoder: ChatEncoder, prompt: str) -> list[int]:
    return encoder.prompt_ids(Example(prompt=prompt, response=""))


def _run(batch: RunningBatch, arrivals: dict[int, list[Row]]) -> int:
    """Step ``batch`` until every row has ended: ``arrivals[k]`` arrive before step k and
    join as soon as there is room. Returns the most rows seen running together."""
    waiting: list[Row] = []
    most, step = 0, 0
    while batch or waiting or any(k >= step for k in arrivals):
        waiting += arrivals.get(step, [])
        joining, waiting = waiting[: batch.room()], waiting[batch.room() :]
        batch.admit(joining)
        most = max(most, len(batch))
        batch.step()
        step += 1
    return most


def test_rows_joining_and_leaving_get_their_greedy_answers(model, tokenizer, encoder):
    assert supports(model)
    prompts = [_ids(encoder, p) for p in PROMPTS]
    caps = [CAP, 3, CAP, 1, 7, CAP, 2, CAP, 5, CAP]
    rows = [Row(p, cap) for p, cap in zip(prompts, caps)]
    batch = RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id, max_rows=4)
    # arrivals at steps 0, 0, 1, 1, 2, 4, ...: rows of different lengths join mid-answer
    arrivals: dict[int, list[Row]] = {}
    for i, row in enumerate(rows):
        arrivals.setdefault([0, 0, 1, 1, 2, 4, 6, 6, 9, 12][i], []).append(row)
    assert _run(batch, arrivals) >= 3
    got = [tokenizer.decode([t for t in r.tokens if t != encoder.stop_id], skip_special_tokens=True) for r in rows]
    want = [tokenizer.decode(_greedy_reference(model, p, cap, encoder.stop_id), skip_special_tokens=True)
            for p, cap in zip(prompts, caps)]
    assert len(set(want)) >= 8  # distinct answers: the comparison can fail
    assert got == want
    for row, cap in zip(rows, caps):
        assert row.finish_reason == ("stop" if row.tokens[-1] == encoder.stop_id else "length")
        assert len(row.tokens) <= cap
    assert batch.mask.shape[1] == 0 and batch.cache is None  # nothing is kept once every row has left


def test_a_dropped_row_leaves_and_the_others_go_on(model, tokenizer, encoder):
    prompts = [_ids(encoder, p) for p in PROMPTS[1:5]]
    rows = [Row(p, CAP) for p in prompts]
    batch = RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id)
    batch.admit(rows)
    assert len(batch) == len(rows)
    batch.step()
    longest = max(rows, key=lambda r: len(r.prompt))
    batch.drop([longest])
    assert longest not in batch.rows
    # the columns only the dropped row used are trimmed: the cache is as wide as the longest row left
    assert batch.mask.shape[1] == max(len(r.prompt) + len(r.tokens) - 1 for r in batch.rows)
    assert batch.cache.layers[0].keys.shape[2] == batch.mask.shape[1]
    _run(batch, {})
    for p, row in zip(prompts, rows):
        if row is not longest:
            assert [t for t in row.tokens if t != encoder.stop_id] == _greedy_reference(model, p, CAP, encoder.stop_id)


def test_a_sampled_rows_seed_holds_whatever_shares_its_batch(model, tokenizer, encoder):
    sampling = GenerateConfig(do_sample=True, temperature=1.5, top_p=0.9, seed=5)
    prompt = _ids(encoder, PROMPTS[1])

    def alone() -> list[int]:
        row = Row(prompt, CAP, sampling)
        _run(RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id), {0: [row]})
        return row.tokens

    first = alone()
    assert alone() == first
    crowd = [Row(_ids(encoder, p), CAP) for p in PROMPTS[2:5]] + [Row(_ids(encoder, p), CAP, replace(sampling, seed=9))
                                                                   for p in PROMPTS[5:7]]
    mine = Row(prompt, CAP, sampling)
    _run(RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id), {0: crowd[:2], 1: [mine] + crowd[2:]})
    assert mine.tokens == first
    greedy = _greedy_reference(model, prompt, CAP, None)
    assert first != greedy[: len(first)]  # it really samples
    other = Row(prompt, CAP, replace(sampling, seed=6))
    _run(RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id), {0: [other]})
    assert other.tokens != first  # another seed, another answer


def test_admit_refuses_rows_that_do_not_fit_or_have_no_budget(model, tokenizer, encoder):
    batch = RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id, max_rows=1)
    prompt = _ids(encoder, PROMPTS[0])
    with pytest.raises(ValueError, match="do not fit"):
        batch.admit([Row(prompt, 2), Row(prompt, 2)])
    with pytest.raises(ValueError, match="at least 1"):
        batch.admit([Row(prompt, 0)])


def test_a_trained_prefix_is_each_rows_leading_context(arch, tiny_model_dirs, tokenizer, encoder, monkeypatch):
    """tasktune's prefix adapter puts its keys and values in the cache before the prompt:
    the running batch answers as batched ``generate`` does (which the prefix module keeps
    equal to one-row generation and to training's positions)."""
    from tasktune.adapters import prefix
    from tasktune.config import AdapterConfig, PrefixConfig
    from tasktune.generate import generate_completions

    model = prefix.apply(load_distinct(tiny_model_dirs[arch]).eval(), AdapterConfig(method="prefix", prefix=PrefixConfig(pre_seq_len=4)))
    assert supports(model)
    prompts = [_ids(encoder, p) for p in PROMPTS]
    caps = [CAP, 3, CAP, 1, 7, CAP, 2, CAP, 5, CAP]  # rows leave at different steps, others join
    rows = [Row(p, cap) for p, cap in zip(prompts, caps)]
    assert _run(RunningBatch(model, encoder.stop_id, tokenizer.pad_token_id, max_rows=4), {0: rows[:4], 2: rows[4:]}) == 4
    got = [tokenizer.decode([t for t in r.tokens if t != encoder.stop_id], skip_special_tokens=True).strip() for r in rows]
    monkeypatch.setattr("tasktune.generate.batched.supports", lambda model: False)  # Hugging Face generate
    want = [c.text for c in generate_completions(model, tokenizer, prompts, encoder.stop_id, caps, batch_size=1)]
    assert len(set(want)) >= 8 and got == want
