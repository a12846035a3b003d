"""An OpenAI-compatible HTTP front for :class:`tasktune.recipes.serve.Engine`.

``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, each
non-streamed or streamed (server-sent events ending in ``data: [DONE]``). A completions
prompt is rendered as one user turn with the model's chat template, as ``tasktune
predict`` does, since a chat-tuned model answers only inside its template. Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``. Decoding is greedy
unless the request gives a ``temperature`` above 0 (then sampled, seeded by ``seed``).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import random
import select
import signal
import socket
import threading
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.serve.engine import Busy, Engine, Expired, Job, Served
from tasktune.serve.stops import StopScanner, cut_at_stop

__all__ = ["ApiError", "make_server", "serve_forever", "chat_example"]

log = logging.getLogger("tasktune.serve")

MAX_BODY = 4 * 2**20
MAX_N = 8
"""Most answers one request may ask for (``n``)."""
MAX_STOPS = 4
"""Most ``stop`` strings, as OpenAI allows."""
UNSUPPORTED = {
    "logprobs": (False,), "top_logprobs": (0,), "tools": ([],), "tool_choice": ("none", "auto"), "functions": ([],),
    "function_call": ("none", "auto"), "response_format": ({"type": "text"},), "frequency_penalty": (0,),
    "presence_penalty": (0,), "logit_bias": ({},), "best_of": (1,), "echo": (False,), "suffix": ("",),
}
"""Parameters that would change the answer and are not implemented, with the values that
change nothing (sent by some clients as defaults); any other value gets a 400."""


class ApiError(Exception):
    """A request the server will not serve: HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of ``{"type": "text", "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", where)


def chat_example(messages: Any) -> Example:
    """OpenAI chat messages as one example: system, (user, assistant) history, last user turn."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content}", "messages")
    system, turns = None, []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            raise ApiError(400, f"{where} must be an object with role and content", where)
        role, text = m["role"], _text(m.get("content"), where)
        if role in ("system", "developer"):
            if turns:
                raise ApiError(400, f"{where}: a system message must come before the conversation", where)
            system = text if system is None else f"{system}\n{text}"
        elif role in ("user", "assistant"):
            want = "user" if len(turns) % 2 == 0 else "assistant"
            if role != want:
                raise ApiError(400, f"{where}: expected a {want} message (user and assistant turns alternate)", where)
            turns.append(text)
        else:
            raise ApiError(400, f"{where}.role {role!r} is not one of system, user, assistant", where)
    if len(turns) % 2 == 0:
        raise ApiError(400, "the last message must be from the user", "messages")
    history = tuple((turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2))
    return Example(prompt=turns[-1], response="", system=system, history=history)


def refuse_unsupported(body: dict) -> None:
    """A 400 naming the first parameter in ``body`` that would change the answer in a way
    this server does not implement (never a silent 200 with an answer that ignored it)."""
    for key, neutral in UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and not any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in neutral):
            raise ApiError(400, f"{key}={json.dumps(value)} is not supported by this server; leave it out", key,
                           "unsupported_parameter")


def stop_strings(body: dict) -> list[str]:
    """``stop``: one string or a list of up to :data:`MAX_STOPS` non-empty strings."""
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops) or len(stops) > MAX_STOPS:
        raise ApiError(400, f"stop must be a non-empty string or a list of up to {MAX_STOPS} of them, got {json.dumps(stop)}",
                       "stop")
    return stops


def _number(body: dict, key: str, kind: type, low: float, high: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ApiError(400, f"{key} must be {'a number' if kind is float else 'an integer'}, got {json.dumps(value)}", key)
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{key} must be within [{low}, {high if high is not None else 'inf'}], got {value}", key)
    return value


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    api_key: str | None
    max_tokens_cap: int
    server_version = "tasktune"
    timeout = 10.0  # seconds a client may stay silent while sending its request (make_server sets it)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - one line per request is logged by _handle
        pass

    # Plumbing -------------------------------------------------------------------

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def _client_gone(self) -> bool:
        """Whether the client closed its connection (it sent its whole request, so a
        readable socket with nothing to read means it has gone)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _wait(self, job: Job):
        """``job``'s Completion; None (and the job cancelled) if the client leaves first."""
        while not job.done.wait(0.25):
            if self._client_gone():
                job.cancelled.set()
                return None
        return job.wait()

    def _authorised(self) -> None:
        if not self.api_key:
            return
        given = self.headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    def _read(self, n: int) -> bytes:
        """``n`` bytes of body, within 3 x ``timeout`` seconds in all: a client that sends
        a byte now and then, each within ``timeout``, still cannot hold a thread."""
        deadline = time.monotonic() + 3 * self.timeout
        chunks, left = [], n
        while left:
            if time.monotonic() > deadline:
                raise ApiError(408, f"the request body did not arrive within {3 * self.timeout:.0f} s")
            chunk = self.rfile.read1(min(left, 1 << 16))
            if not chunk:
                raise ApiError(400, f"the body ended after {n - left} of its Content-Length of {n} bytes")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            raise ApiError(411, "a JSON body with Content-Length is required")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        raw = self._read(int(length))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _handle(self, route) -> None:
        """Run ``route``; answer its errors in OpenAI's shape; log one line per request
        (and the traceback of a 500, which the client sees only as a request id)."""
        self._rid, self._status, self._model, self._tokens = uuid.uuid4().hex[:12], 0, "-", (0, 0)
        started = time.perf_counter()
        try:
            self._authorised()
            route()
        except ApiError as exc:
            self._reply_error(exc)
        except OSError:
            self._status = self._status or 499  # the client went away (or stalled) before its answer
        except Exception:  # noqa: BLE001 - one failing request never takes the server down
            log.exception("request %s failed", self._rid)
            self._reply_error(ApiError(500, f"internal error (request id {self._rid}; the server's log has the details)",
                                       kind="server_error"))
        log.info("%s %s %s model=%s status=%d prompt_tokens=%d completion_tokens=%d seconds=%.3f", self._rid,
                 self.command, self.path, self._model, self._status, *self._tokens, time.perf_counter() - started)

    def _reply_error(self, exc: ApiError) -> None:
        try:
            if self._status:  # a stream's headers are out: the error goes in the stream
                self._event({"error": exc.body()["error"]})
                self._event("[DONE]")
            else:
                self._send_json(exc.status, exc.body(), {"Retry-After": "1"} if exc.status in (429, 503) else None)
                self._status = exc.status
        except OSError:
            self._status = self._status or 499

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle(self._models if self.path.rstrip("/") == "/v1/models" else self._no_route)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.rstrip("/")
        if path in ("/v1/chat/completions", "/v1/completions"):
            self._handle(lambda: self._complete(chat=path == "/v1/chat/completions"))
        else:
            self._handle(self._no_route)

    def _no_route(self) -> None:
        raise ApiError(404, f"no route {self.command} {self.path}", code="unknown_url")

    # Routes ---------------------------------------------------------------------

    def _models(self) -> None:
        now = int(time.time())
        data = [{"id": name, "object": "model", "created": now, "owned_by": "tasktune"} for name in self.engine.models]
        self._send_json(200, {"object": "list", "data": data})

    def _request(self, body: dict, chat: bool) -> tuple[Served, list[Job], bool, bool, list[str]]:
        refuse_unsupported(body)
        name = body.get("model")
        if not isinstance(name, str):
            raise ApiError(400, "model is required: one of " + ", ".join(self.engine.models), "model")
        served = self.engine.models.get(name)
        if served is None:
            raise ApiError(404, f"model {name!r} is not served here; available: {', '.join(self.engine.models)}", "model",
                           "model_not_found")
        if chat:
            example = chat_example(body.get("messages"))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str) or not prompt:
                raise ApiError(400, "prompt must be a non-empty string (one prompt per request)", "prompt")
            example = Example(prompt=prompt, response="")
        n = _number(body, "n", int, 1, MAX_N) or 1
        stops = stop_strings(body)
        asked = _number(body, "max_completion_tokens", int, 1) or _number(body, "max_tokens", int, 1)
        if asked is not None and asked > self.max_tokens_cap:
            raise ApiError(400, f"max_tokens={asked} is over this server's cap of {self.max_tokens_cap}", "max_tokens")
        max_tokens = asked or min(served.default_tokens, self.max_tokens_cap)
        ids = served.prompt_ids(example)
        if len(ids) + max_tokens > served.context:
            raise ApiError(400, f"the prompt is {len(ids)} tokens and max_tokens {max_tokens}: over the model's context of "
                           f"{served.context}; shorten the conversation", "messages" if chat else "prompt",
                           "context_length_exceeded")
        temperature = _number(body, "temperature", float, 0.0, 2.0)
        top_p = _number(body, "top_p", float, 0.0, 1.0)
        seed = _number(body, "seed", int, 0)
        sampling = GenerateConfig()
        if temperature:
            if top_p == 0:
                raise ApiError(400, "top_p must be above 0 when sampling", "top_p")
            # No seed: a fresh one, so that unseeded requests (and their n choices) differ.
            seed = seed if seed is not None else random.randrange(2**31)
            sampling = GenerateConfig(do_sample=True, temperature=float(temperature), top_p=float(top_p or 1.0), seed=seed)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "stream must be true or false", "stream")
        options = body.get("stream_options") or {}
        usage = bool(isinstance(options, dict) and options.get("include_usage"))
        # n answers: greedy ones are the same answer n times; sampled ones each their own
        # seed (seed, seed + 1, ...), so a request's choices differ and reproduce.
        jobs = [Job(served, ids, max_tokens, replace(sampling, seed=sampling.seed + i) if sampling.do_sample else sampling, stream)
                for i in range(n)]
        return served, jobs, stream, usage, stops

    def _complete(self, chat: bool) -> None:
        body = self._body()
        served, jobs, stream, want_usage, stops = self._request(body, chat)
        self._model = served.name
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        prompt_tokens = len(jobs[0].ids)
        if len(jobs) > self.engine.max_queue:
            raise ApiError(400, f"n={len(jobs)} is over this server's queue of {self.engine.max_queue}", "n")
        try:
            self.engine.submit(*jobs)
        except Busy as exc:
            raise ApiError(429, f"the server is busy ({exc}); retry shortly", code="rate_limit_exceeded",
                           kind="rate_limit_error") from None
        except Expired as exc:
            raise ApiError(503, f"{exc}; retry shortly", kind="server_error") from None
        try:
            self._answer(jobs, served, chat, ident, created, prompt_tokens, want_usage, stops, stream)
        finally:  # however the answer ended (sent, failed, client gone), nothing more is generated for it
            for job in jobs:
                job.cancelled.set()

    def _answer(self, jobs: list[Job], served: Served, chat: bool, ident: str, created: int, prompt_tokens: int,
                want_usage: bool, stops: list[str], stream: bool) -> None:
        if stream:
            self._stream(jobs, served, chat, ident, created, prompt_tokens, want_usage, stops)
            return
        choices, tokens = [], 0
        for i, job in enumerate(jobs):
            try:
                done = self._wait(job)
            except Expired as exc:
                raise ApiError(503, f"the server is overloaded: {exc}; retry shortly", kind="server_error") from None
            if done is None:  # the client has gone
                self._status = 499
                return
            text, stopped = cut_at_stop(done.text, stops)
            finish = "stop" if stopped else done.finish_reason
            tokens += done.tokens
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                                "logprobs": None})
            else:
                choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
        self._tokens = (prompt_tokens, tokens)
        self._send_json(200, {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                              "model": served.name, "choices": choices, "usage": usage})

    def _event(self, payload: dict | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
        self.wfile.flush()

    def _stream(self, jobs: list[Job], served: Served, chat: bool, ident: str, created: int, prompt_tokens: int,
                want_usage: bool, stops: list[str]) -> None:
        """Each job's pieces as events of its choice index, one job after the other (the
        engine runs streams in turn); a stop string ends its choice and its generation."""
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(index: int, delta: str | None, finish: str | None, first: bool = False) -> dict:
            if chat:
                d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta is not None else {})
                choice = {"index": index, "delta": d, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": index, "text": delta or "", "finish_reason": finish, "logprobs": None}
            return {"id": ident, "object": obj, "created": created, "model": served.name, "choices": [choice]}

        # The first piece before the headers: a request that expired in the queue still
        # gets its status (503), not a 200 stream with an error inside.
        while True:
            try:
                first = jobs[0].pieces.get(timeout=0.25)
                break
            except queue.Empty:
                if self._client_gone():
                    for job in jobs:
                        job.cancelled.set()
                    self._status = 499
                    return
        if isinstance(first, Expired):
            for job in jobs:
                job.cancelled.set()
            raise ApiError(503, f"the server is overloaded: {first}; retry shortly", kind="server_error")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self._status = 200
        tokens = 0
        try:
            for index, job in enumerate(jobs):
                if chat:
                    self._event(chunk(index, None, None, first=True))
                scanner, begun = StopScanner(stops), False
                while True:
                    piece = first if index == 0 and first is not None else job.pieces.get()
                    first = None
                    if isinstance(piece, BaseException):
                        if isinstance(piece, Expired):
                            error = ApiError(503, f"the server is overloaded: {piece}", kind="server_error")
                        else:
                            log.error("request %s: generation failed: %r", self._rid, piece)
                            error = ApiError(500, f"generation failed (request id {self._rid})", kind="server_error")
                        self._event({"error": error.body()["error"]})
                        self._event("[DONE]")
                        return
                    if isinstance(piece, str) and not begun:  # leading blanks dropped, as in a whole answer
                        piece = piece.lstrip()
                        begun = bool(piece)
                        if not begun:
                            continue
                    if not isinstance(piece, str):  # the final Completion
                        rest = scanner.flush()
                        if rest:
                            self._event(chunk(index, rest, None))
                        self._event(chunk(index, None if chat else "", "stop" if scanner.stopped else piece.finish_reason))
                        tokens += piece.tokens
                        break
                    if scanner.stopped:  # the rest of a stopped answer: wait for its Completion
                        continue
                    text = scanner.feed(piece)
                    if text:
                        self._event(chunk(index, text, None))
                    if scanner.stopped:
                        job.cancelled.set()  # the answer has ended: the worker stops generating it
            self._tokens = (prompt_tokens, tokens)
            if want_usage:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
                self._event({"id": ident, "object": obj, "created": created, "model": served.name, "choices": [],
                             "usage": usage})
            self._event("[DONE]")
        except OSError:  # the client left or stalled (the caller cancels the jobs)
            self._status = 499


class _Server(ThreadingHTTPServer):
    # Each response closes its connection (HTTP/1.0), so concurrent clients reconnect all
    # the time; the socketserver default backlog of 5 resets connections under 16 clients.
    request_queue_size = 128


def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_tokens_cap: int = 512, client_timeout: float = 10.0) -> ThreadingHTTPServer:
    """A threaded HTTP server bound to ``host:port`` (port 0: any free port); a client
    silent for ``client_timeout`` seconds while sending its request is cut off."""
    handler = type("Handler", (_Handler,), {"engine": engine, "api_key": api_key, "max_tokens_cap": max_tokens_cap,
                                            "timeout": client_timeout})
    server = _Server((host, port), handler)
    server.daemon_threads = True
    return server



def serve_forever(served: list[Served], host: str, port: int, api_key: str | None, max_tokens_cap: int,
                  max_queue: int = 64) -> None:
    """Answer requests for ``served`` until Ctrl-C or SIGTERM; then stop taking requests,
    finish the ones already taken, and say so."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine(served, max_queue=max_queue)
    server = make_server(engine, host, port, api_key, max_tokens_cap)
    server.daemon_threads = False  # server_close() waits for every answer being written
    names = ", ".join(engine.models)
    where = f"http://{server.server_address[0]}:{server.server_address[1]}/v1"
    print(f"serving {names} at {where} (OpenAI API; {'API key required' if api_key else 'no API key'}); "
          "Ctrl-C or SIGTERM stops", flush=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.info("stopping: no new requests; finishing %d waiting and any running", engine.waiting())
        engine.close()  # the worker runs what was queued before it stops
        server.server_close()
        log.info("stopped")
