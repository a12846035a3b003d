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
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.serve.engine import Engine, Job, Served

__all__ = ["ApiError", "make_server", "serve_forever", "chat_example"]

MAX_BODY = 4 * 2**20


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

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet; errors still go to the client
        pass

    # Plumbing -------------------------------------------------------------------

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> None:
        if not self.api_key:
            return
        given = self.headers.get("Authorization", "")
        token = given[7:] if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "a JSON body with Content-Length is required")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _handle(self, route) -> None:
        try:
            self._authorised()
            route()
        except ApiError as exc:
            self._send_json(exc.status, exc.body())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - one failing request never takes the server down
            try:
                self._send_json(500, ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error").body())
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/v1/models":
            self._handle(self._models)
        else:
            self._send_json(404, ApiError(404, f"no route GET {self.path}", code="unknown_url").body())

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            self._handle(lambda: self._complete(chat=True))
        elif path == "/v1/completions":
            self._handle(lambda: self._complete(chat=False))
        else:
            self._send_json(404, ApiError(404, f"no route POST {self.path}", code="unknown_url").body())

    # Routes ---------------------------------------------------------------------

    def _models(self) -> None:
        now = int(time.time())
        data = [{"id": name, "object": "model", "created": now, "owned_by": "tasktune"} for name in self.engine.models]
        self._send_json(200, {"object": "list", "data": data})

    def _request(self, body: dict, chat: bool) -> tuple[Served, Job, bool, bool]:
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
        _number(body, "n", int, 1, 1)  # one answer per request
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
            sampling = GenerateConfig(do_sample=True, temperature=float(temperature), top_p=float(top_p or 1.0), seed=seed or 0)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "stream must be true or false", "stream")
        options = body.get("stream_options") or {}
        usage = bool(isinstance(options, dict) and options.get("include_usage"))
        return served, Job(served, ids, max_tokens, sampling, stream), stream, usage

    def _complete(self, chat: bool) -> None:
        body = self._body()
        served, job, stream, want_usage = self._request(body, chat)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        prompt_tokens = len(job.ids)
        self.engine.submit(job)
        if not stream:
            done = job.wait()
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": done.tokens,
                     "total_tokens": prompt_tokens + done.tokens}
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": done.text},
                          "finish_reason": done.finish_reason, "logprobs": None}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": done.text, "finish_reason": done.finish_reason, "logprobs": None}
                obj = "text_completion"
            self._send_json(200, {"id": ident, "object": obj, "created": created, "model": served.name,
                                  "choices": [choice], "usage": usage})
            return
        self._stream(job, served, chat, ident, created, prompt_tokens, want_usage)

    def _event(self, payload: dict | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
        self.wfile.flush()

    def _stream(self, job: Job, served: Served, chat: bool, ident: str, created: int, prompt_tokens: int, want_usage: bool) -> None:
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None, first: bool = False) -> dict:
            if chat:
                d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta is not None else {})
                choice = {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
            return {"id": ident, "object": obj, "created": created, "model": served.name, "choices": [choice]}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            if chat:
                self._event(chunk(None, None, first=True))
            while True:
                piece = job.pieces.get()
                if isinstance(piece, BaseException):
                    self._event({"error": ApiError(500, f"generation failed: {piece}", kind="server_error").body()["error"]})
                    break
                if not isinstance(piece, str):  # the final Completion
                    self._event(chunk(None if chat else "", piece.finish_reason))
                    if want_usage:
                        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": piece.tokens,
                                 "total_tokens": prompt_tokens + piece.tokens}
                        self._event({"id": ident, "object": obj, "created": created, "model": served.name,
                                     "choices": [], "usage": usage})
                    break
                self._event(chunk(piece, None))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            job.cancelled.set()  # the client left: the worker stops this answer


class _Server(ThreadingHTTPServer):
    # Each response closes its connection (HTTP/1.0), so concurrent clients reconnect all
    # the time; the socketserver default backlog of 5 resets connections under 16 clients.
    request_queue_size = 128


def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_tokens_cap: int = 512) -> ThreadingHTTPServer:
    """A threaded HTTP server bound to ``host:port`` (port 0: any free port)."""
    handler = type("Handler", (_Handler,), {"engine": engine, "api_key": api_key, "max_tokens_cap": max_tokens_cap})
    server = _Server((host, port), handler)
    server.daemon_threads = True
    return server



def serve_forever(served: list[Served], host: str, port: int, api_key: str | None, max_tokens_cap: int) -> None:
    """Answer requests for ``served`` until interrupted."""
    engine = Engine(served)
    server = make_server(engine, host, port, api_key, max_tokens_cap)
    names = ", ".join(engine.models)
    where = f"http://{server.server_address[0]}:{server.server_address[1]}/v1"
    print(f"serving {names} at {where} (OpenAI API; {'API key required' if api_key else 'no API key'}); Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.close()
