"""`tasktune serve`: the official openai client against a server on a loopback port,
two LoRA runs on one base, streaming and not, errors in OpenAI's shape."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import openai
from conftest import TASKTUNE, run_cli

from tasktune.generate import Completion

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arith_lora.yaml"
KEY = "test-key-123"


def _train(model_dir: Path, out: Path, seed: int) -> Path:
    result = run_cli("train", str(CONFIG), f"model={model_dir}", f"output_dir={out}", f"seed={seed}",
                     "train.max_steps=4", "train.batch_size=4", "eval.max_examples=8", "eval.base=false", "train.lr=1e-2")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def server(distinct_llama_dir, tmp_path_factory):
    """Two LoRA runs of the tiny Llama, served by one process on a free loopback port."""
    from tasktune.recipes.serve import load_served
    from tasktune.serve import Engine, make_server

    root = tmp_path_factory.mktemp("serve")
    # Weights with distinct greedy answers per prompt (conftest.load_distinct): at the
    # default init every answer is the same and near-ties make batched != alone a coin toss.
    base = distinct_llama_dir
    runs = [_train(base, root / "run_a", 1), _train(base, root / "run_b", 2)]
    engine = Engine(load_served(runs))
    http = make_server(engine, "127.0.0.1", 0, KEY, max_tokens_cap=64)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    yield {"url": url, "runs": runs, "engine": engine, "base": str(base)}
    http.shutdown()
    http.server_close()
    engine.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["url"], api_key=KEY, max_retries=0, timeout=120)


def _predictions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def _ask(client, model: str, prompt: str, **kw) -> str:
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **kw)
    return out.choices[0].message.content


def test_models_lists_the_base_and_every_run(client, server):
    names = {m.id for m in client.models.list()}
    assert names == {"run_a", "run_b", server["base"]}


def test_chat_answers_as_the_run_did_for_each_adapter_by_name(client, server):
    answers = {}
    for run in server["runs"]:
        rows = _predictions(run)
        got = [_ask(client, run.name, r["prompt"]) for r in rows]
        assert got == [r["prediction"] for r in rows], run.name  # held-out problems, as evaluated
        assert len(set(got)) > 1  # answers differ from prompt to prompt: the comparison means something
        answers[run.name] = got
    assert answers["run_a"] != answers["run_b"]  # two adapters, two answers: each request got its own
    base = [_ask(client, server["base"], r["prompt"]) for r in _predictions(server["runs"][0])]
    assert base != answers["run_a"]  # the base answers with the adapters off


def test_full_response_shape_and_usage(client, server):
    out = client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "12+34="}], max_tokens=5)
    assert out.object == "chat.completion" and out.model == "run_a" and out.id.startswith("chatcmpl-")
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 0 and 0 < out.usage.completion_tokens <= 5
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_streaming_pieces_add_up_to_the_full_answer(client):
    full = client.chat.completions.create(model="run_b", messages=[{"role": "user", "content": "56-78="}], max_tokens=12)
    stream = client.chat.completions.create(
        model="run_b", messages=[{"role": "user", "content": "56-78="}], max_tokens=12, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == full.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_completions_endpoint_streamed_and_not(client):
    out = client.completions.create(model="run_a", prompt="3+4=", max_tokens=6)
    assert out.object == "text_completion" and out.choices[0].text == _ask(client, "run_a", "3+4=", max_tokens=6)
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="run_a", prompt="3+4=", max_tokens=6, stream=True))
    assert streamed.strip() == out.choices[0].text


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(client, server):
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(5)]
    models = ["run_a", "run_b"]
    alone = {(m, p): _ask(client, m, p, max_tokens=8) for m in models for p in prompts}
    with ThreadPoolExecutor(16) as pool:
        futures = {(m, p): pool.submit(_ask, client, m, p, max_tokens=8) for m in models for p in prompts}
        together = {k: f.result() for k, f in futures.items()}
    assert together == alone


def test_errors_are_openai_shaped_and_the_server_keeps_going(client, server):
    with pytest.raises(openai.NotFoundError) as info:
        _ask(client, "no-such-model", "1+1=")
    assert "run_a" in str(info.value)  # says what is available
    with pytest.raises(openai.BadRequestError, match="cap of 64"):
        _ask(client, "run_a", "1+1=", max_tokens=65)
    with pytest.raises(openai.BadRequestError, match="context"):
        _ask(client, "run_a", "1+1= " * 400, max_tokens=8)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "x"}], temperature="hot")
    with pytest.raises(openai.BadRequestError, match="last message must be from the user"):
        client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]: expected a user message"):
        client.chat.completions.create(model="run_a", messages=[{"role": "assistant", "content": "x"}])
    bad_key = openai.OpenAI(base_url=server["url"], api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        _ask(bad_key, "run_a", "1+1=")
    request = urllib.request.Request(server["url"] + "/chat/completions", data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=30)
    assert raw.value.code == 400
    body = json.loads(raw.value.read())
    assert set(body["error"]) == {"message", "type", "param", "code"} and "not valid JSON" in body["error"]["message"]
    assert _ask(client, "run_a", "1+1=", max_tokens=4) is not None  # still serving


def test_sampling_is_opt_in_and_seeded(client):
    greedy = {_ask(client, "run_a", "9+9=", max_tokens=8) for _ in range(3)}
    assert len(greedy) == 1
    seeded = {_ask(client, "run_a", "9+9=", max_tokens=8, temperature=1.5, seed=7) for _ in range(3)}
    assert len(seeded) == 1  # the same seed, the same answer


def test_serve_command_needs_a_run_or_model():
    result = subprocess.run([TASKTUNE, "serve"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--run" in result.stderr


def test_a_stream_of_answers_learned_in_another_form_gets_them_whole_as_people_read_them(server):
    # A run trained with reversed (or digit-spaced) answers: streaming its raw pieces would
    # show the client `931` for 139, so the stream carries the restored answer, whole.
    from dataclasses import replace

    from tasktune.config import GenerateConfig
    from tasktune.data.example import Example
    from tasktune.serve import Engine, Job

    live = server["engine"].models["run_a"]
    hidden = replace(live, name="run_a_reversed", present=lambda text: text[::-1], live=False)
    engine = Engine([live, hidden])
    try:
        pieces = {}
        for served in (live, hidden):
            ids = served.prompt_ids(Example(prompt="56-78=", response=""))
            job = engine.submit(Job(served, ids, 12, GenerateConfig(), stream=True))
            got = []
            while not isinstance(piece := job.pieces.get(timeout=120), Completion):
                got.append(piece)
            pieces[served.name] = (got, piece)
    finally:
        engine.close()
    raw = "".join(pieces["run_a"][0]).strip()
    assert len(pieces["run_a"][0]) > 1 and len(set(raw)) > 1  # several pieces, not a palindrome-prone answer
    got, final = pieces["run_a_reversed"]
    assert got == [raw[::-1]] == [final.text]


def _answer_and_stop(client) -> tuple[str, str, str]:
    """A greedy answer with a stop string inside it, and the answer cut before it."""
    full = _ask(client, "run_a", "56-78=", max_tokens=12)
    k = next(i for i in range(1, len(full) - 1) if full.find(full[i : i + 2]) == i)  # first occurrence at i
    assert len(set(full)) > 2, full  # distinct characters: the cut shows
    return full, full[k : k + 2], full[:k]


def test_stop_ends_the_answer_before_the_stop_string(client):
    full, stop, cut = _answer_and_stop(client)
    out = client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "56-78="}], max_tokens=12,
                                         stop=[stop, "never-in-an-answer"])
    assert out.choices[0].message.content == cut.strip() != full
    assert out.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "56-78="}], max_tokens=12,
                                            stop=stop, stream=True)
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip() == cut.strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]


def test_n_answers_greedy_alike_sampled_each_seeded(client):
    out = client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "9+9="}], max_tokens=8, n=3)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert len({c.message.content for c in out.choices}) == 1 == len({_ask(client, "run_a", "9+9=", max_tokens=8)} |
                                                                       {out.choices[0].message.content})

    def sampled():
        return [c.message.content for c in client.chat.completions.create(
            model="run_a", messages=[{"role": "user", "content": "9+9="}], max_tokens=8, n=4, temperature=1.5, seed=3).choices]

    first = sampled()
    assert first == sampled() and len(set(first)) > 1  # the same request, the same choices; choices differ
    stream = client.chat.completions.create(model="run_a", messages=[{"role": "user", "content": "9+9="}], max_tokens=8,
                                            n=4, temperature=1.5, seed=3, stream=True)
    texts = ["", "", "", ""]
    for c in stream:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
    assert [t.strip() for t in texts] == first


@pytest.mark.parametrize("param,value", [
    ("logprobs", True), ("frequency_penalty", 0.5), ("presence_penalty", 1.0), ("logit_bias", {"15": 5}),
    ("response_format", {"type": "json_object"}), ("tools", [{"type": "function", "function": {"name": "f"}}]),
])
def test_a_parameter_that_would_change_the_answer_and_is_not_supported_gets_a_400(client, param, value):
    with pytest.raises(openai.BadRequestError) as info:
        _ask(client, "run_a", "1+1=", max_tokens=4, **{param: value})
    assert info.value.body["param"] == param and "not supported" in info.value.body["message"]


def test_neutral_values_of_unsupported_parameters_are_accepted(client):
    plain = _ask(client, "run_a", "1+1=", max_tokens=4)
    assert _ask(client, "run_a", "1+1=", max_tokens=4, logprobs=False, frequency_penalty=0, presence_penalty=0) == plain


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], [""], [3]])
def test_bad_stop_gets_a_400(client, stop):
    with pytest.raises(openai.BadRequestError) as info:
        _ask(client, "run_a", "1+1=", max_tokens=4, stop=stop)
    assert info.value.body["param"] == "stop"


def test_neutral_float_values_are_accepted_too(client):
    plain = _ask(client, "run_a", "1+1=", max_tokens=4)
    assert _ask(client, "run_a", "1+1=", max_tokens=4, frequency_penalty=0.0, presence_penalty=0.0) == plain


def test_unseeded_sampling_differs_from_request_to_request(client):
    answers = {_ask(client, "run_a", "9+9=", max_tokens=8, temperature=1.5) for _ in range(4)}
    assert len(answers) > 1
