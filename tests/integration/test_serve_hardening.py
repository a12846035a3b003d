"""What an exposed server needs: a bounded queue (429), a deadline for waiting (503),
requests whose client left dropped unrun, per-request seeds that hold in a crowd, 500s
logged for the operator and answered with a request id only, errors inside a stream,
and a client that sends its body slowly cut off without holding up the others."""

from __future__ import annotations

import http.client as http_client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.serve import Engine, Job, make_server
from tasktune.serve.engine import Busy, Expired

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(distinct_llama_dir):
    """The tiny Llama with distinct answers per prompt, served alone (no training)."""
    from tasktune.recipes.serve import load_served

    return load_served([], str(distinct_llama_dir))[0]


@pytest.fixture
def gate(monkeypatch):
    """Holds the engine's worker before it takes each job, until set: what is queued
    while it is clear stays queued."""
    event = threading.Event()
    take = Engine._next

    def held(self):
        event.wait()
        return take(self)

    monkeypatch.setattr(Engine, "_next", held)
    return event


def _job(served, prompt: str, sampling: GenerateConfig = GenerateConfig(), stream: bool = False) -> Job:
    return Job(served, served.prompt_ids(Example(prompt=prompt, response="")), 8, sampling, stream)


def _alone(served, prompt: str, sampling: GenerateConfig) -> str:
    engine = Engine([served])
    try:
        return engine.submit(_job(served, prompt, sampling)).wait().text
    finally:
        engine.close()


def test_a_full_queue_refuses_and_takes_all_or_none(served, gate):
    engine = Engine([served], max_queue=2)
    try:
        first, second = engine.submit(_job(served, "1+1=")), engine.submit(_job(served, "2+2="))
        with pytest.raises(Busy):
            engine.submit(_job(served, "3+3="))
        with pytest.raises(Busy):  # one place would be left after the first two: neither goes in
            engine.submit(_job(served, "4+4="), _job(served, "5+5="))
        assert engine.waiting() == 2
        gate.set()
        assert first.wait().text is not None and second.wait().text is not None
    finally:
        gate.set()
        engine.close()


@pytest.mark.parametrize("deadline,case", [(0.05, "late"), (None, "gone")])
def test_a_request_past_its_deadline_or_whose_client_left_is_not_run(served, gate, deadline, case):
    engine = Engine([served], deadline=deadline)
    try:
        job, kept = engine.submit(_job(served, "1+1=")), engine.submit(_job(served, "2+2="))
        if case == "gone":
            job.cancelled.set()
        time.sleep(0.2)
        gate.set()
        with pytest.raises(Expired, match="waited" if case == "late" else "went away"):
            job.wait()
        assert job.result is None  # nothing was generated for it
        if deadline is None:
            assert kept.wait().text is not None  # the one whose client stayed is answered
    finally:
        gate.set()
        engine.close()


def test_a_closed_engine_takes_no_more_jobs_and_finishes_those_it_took(served, gate):
    engine = Engine([served])
    taken = engine.submit(_job(served, "1+1="))
    gate.set()
    engine.close()
    assert taken.wait().text is not None
    with pytest.raises(Expired, match="shutting down"):
        engine.submit(_job(served, "2+2="))


def test_a_sampled_request_gets_its_seeds_answer_whatever_else_is_queued(served, gate):
    sampling = GenerateConfig(do_sample=True, temperature=0.5, top_p=1.0, seed=11)
    prompts = ["12+7=", "12+7=", "40-3=", "5+5="]
    engine = Engine([served])
    try:
        jobs = [engine.submit(_job(served, p, sampling)) for p in prompts]
        gate.set()
        crowd = [j.wait().text for j in jobs]
    finally:
        gate.set()
        engine.close()
    gate.set()
    alone = [_alone(served, p, sampling) for p in prompts]
    assert crowd == alone
    assert len(set(alone)) > 1  # the answers differ: the comparison can fail


def test_requests_join_a_running_batch_and_one_whose_client_left_stops_generating(served):
    """Continuous batching: a request sent while another is being generated joins it
    (it ends first, though it came second), and a running request whose client goes away
    leaves the batch at the next step instead of generating to its cap."""
    engine = Engine([served])
    try:
        long = Job(served, served.prompt_ids(Example(prompt="1+1=", response="")), 300, GenerateConfig(), stream=True)
        engine.submit(long)
        assert isinstance(long.pieces.get(timeout=60), str)  # it is running
        short = engine.submit(_job(served, "2+2="))  # 8 tokens
        gone = engine.submit(Job(served, served.prompt_ids(Example(prompt="3+3=", response="")), 300, GenerateConfig(), stream=False))
        assert short.wait().tokens == 8
        assert not long.done.is_set()  # the short one joined the long one's batch and left it first
        gone.cancelled.set()
        long.cancelled.set()
        assert gone.wait().tokens < 300 and long.wait().tokens < 300  # stopped, not generated to the cap
    finally:
        engine.close()


@pytest.fixture
def http(served):
    """A server over an engine with a queue of 1 and a 1-second client timeout."""
    engine = Engine([served], max_queue=1)
    server = make_server(engine, "127.0.0.1", 0, None, 64, client_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/v1", "port": server.server_address[1], "engine": engine}
    server.shutdown()
    server.server_close()
    engine.close()


def _post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def _chat(model: str, prompt: str, **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, **kw}


def test_overload_is_answered_429_with_retry_after(gate, http, served):  # gate first: the engine starts held
    held = http["engine"].submit(_job(served, "1+1="))  # fills the queue of 1 while the worker is held
    status, headers, body = _post(http["url"], _chat(served.name, "2+2="))
    gate.set()
    held.wait()
    assert status == 429 and headers.get("Retry-After") == "1"
    assert body["error"]["type"] == "rate_limit_error" and "busy" in body["error"]["message"]
    assert _post(http["url"], _chat(served.name, "2+2="))[0] == 200  # served again once there is room


def test_a_500_is_logged_with_its_traceback_and_answered_with_a_request_id_only(http, served, caplog):
    def broken(text: str) -> str:
        raise RuntimeError("secret internal detail")

    http["engine"].models["broken"] = replace(served, name="broken", present=broken)
    with caplog.at_level(logging.INFO, logger="tasktune.serve"):
        status, _, body = _post(http["url"], _chat("broken", "1+1="))
        message = body["error"]["message"]
        rid = message.split("request id ")[1].split(";")[0]

        def lines():  # the request's line is logged once its answer is written: wait for it
            return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and rid in r.getMessage()]

        for _ in range(50):
            if not lines():
                time.sleep(0.1)
    assert status == 500 and "secret" not in message
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and rid in r.getMessage()]
    assert failed and failed[0].exc_info and "secret internal detail" in str(failed[0].exc_info[1])
    assert len(lines()) == 1 and "status=500" in lines()[0] and "model=broken" in lines()[0]


def _raises(text: str) -> str:
    raise RuntimeError("fails once the answer is complete")


@pytest.mark.parametrize("live,present", [
    (True, _raises),  # generation fails: the engine hands the error to the stream
    (False, lambda text: 42),  # the server's own code fails once the stream has begun
])
def test_an_error_inside_a_stream_is_an_event_not_a_second_status_line(http, served, live, present):
    http["engine"].models["broken"] = replace(served, name="broken", present=present, live=live)
    conn = http_client.HTTPConnection("127.0.0.1", http["port"], timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(_chat("broken", "1+1=", stream=True)),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200 and "HTTP/1." not in text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert "error" in events[-1] and "request id" in events[-1]["error"]["message"]
    assert text.rstrip().endswith("data: [DONE]")


def _reply(sock: socket.socket, within: float) -> bytes:
    """What the server sends on ``sock`` until it closes, or its response is whole."""
    sock.settimeout(0.5)
    reply, started = b"", time.perf_counter()
    while time.perf_counter() - started < within:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
        if not chunk or (length is not None and len(body) >= length):
            break
    return reply


def test_a_client_sending_its_body_slowly_is_cut_off_and_others_are_served(http, served):
    slow = socket.create_connection(("127.0.0.1", http["port"]), timeout=30)
    try:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"model\"")
        started = time.perf_counter()
        assert _post(http["url"], _chat(served.name, "3+4="))[0] == 200  # not held up by the slow one
        assert time.perf_counter() - started < 3  # answered before the slow one's deadline
        reply = _reply(slow, 10)  # the server answers once 3 x the 1-second timeout has passed
        assert 2.5 <= time.perf_counter() - started < 10
    finally:
        slow.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]


def test_sigterm_stops_taking_requests_finishes_and_says_so(tiny_model_dirs):
    import os
    import re
    import signal
    import subprocess
    import sys

    tasktune = str(Path(sys.executable).with_name("tasktune"))
    proc = subprocess.Popen([tasktune, "serve", "--model", str(tiny_model_dirs["llama"]), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()
        port = int(re.search(r":(\d+)/v1", line).group(1))
        status, _, body = _post(f"http://127.0.0.1:{port}/v1", _chat(str(tiny_model_dirs["llama"]), "1+1="))
        assert status == 200 and body["choices"][0]["finish_reason"] in ("stop", "length")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopping: no new requests" in err and "stopped" in err
    assert re.search(r"POST /v1/chat/completions model=\S+ status=200 prompt_tokens=\d+ completion_tokens=\d+", err)


def test_a_body_trickling_in_is_cut_off_by_its_deadline(http, served):
    """Each byte within the 1-second silence limit, the whole past 3 seconds: answered 408."""
    with socket.create_connection(("127.0.0.1", http["port"]), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 500\r\n\r\n")
        started = time.perf_counter()
        reply = b""
        while time.perf_counter() - started < 10:
            try:
                s.sendall(b" ")
            except OSError:
                break
            s.settimeout(0.5)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            reply += chunk
            if not chunk or b"\r\n\r\n" in reply:
                break
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert 2.5 <= time.perf_counter() - started < 10


def test_a_model_the_running_batch_cannot_drive_is_answered_by_batched_generate(served):
    """Prefix tuning brings its own cache: the engine falls back to batched ``generate``,
    with the same answers as ``generate_completions`` (streamed and not)."""
    import copy

    from peft import PrefixTuningConfig, get_peft_model

    from tasktune.generate import generate_completions
    from tasktune.generate.continuous import supports

    model = get_peft_model(copy.deepcopy(served.model), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    prefix = replace(served, name="prefix", model=model)
    assert not supports(model) and supports(served.model)
    prompts = ["1+1=", "2+3=", "7-4="]  # one length: no padding (prefix tuning's answers depend on it)
    engine = Engine([prefix])
    try:
        jobs = [engine.submit(_job(prefix, p, stream=i == 2)) for i, p in enumerate(prompts)]
        got = [j.wait().text for j in jobs]
    finally:
        engine.close()
    want = generate_completions(model, served.tokenizer, [prefix.prompt_ids(Example(prompt=p, response="")) for p in prompts],
                                served.encoder.stop_id, 8)
    assert got == [c.text for c in want] and len(set(got)) > 1
