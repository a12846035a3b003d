"""An OpenAI-compatible HTTP front for :class:`tasktune.serve.Engine`, on FastAPI and
uvicorn (the stack of vLLM's and LLaMA-Factory's OpenAI servers).

``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, each
non-streamed or streamed (server-sent events through ``sse-starlette``, ending in
``data: [DONE]``). The request is checked by :func:`tasktune.serve.requests.parse_request`
(independent of the framework); this module waits for the engine's answers on the
event loop (the engine wakes it; no thread is held per request), notices a client that has gone (its jobs are cancelled, queued
or running), logs one line per request, and turns failures into OpenAI-shaped errors: a
500 is logged with its traceback and answered with a request id only, and an error
once a stream has begun is an event in the stream.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from tasktune.serve.engine import Busy, Engine, Expired, Job
from tasktune.serve.requests import MAX_BODY, ApiError, Request as ApiRequest, parse_request
from tasktune.serve.stops import StopScanner, cut_at_stop

__all__ = ["make_app"]

log = logging.getLogger("tasktune.serve")

POLL = 0.1
"""Seconds between looks at the client while an answer is awaited."""


def _overloaded(exc: Expired) -> ApiError:
    return ApiError(503, f"the server is overloaded: {exc}; retry shortly", kind="server_error")


def _internal(rid: str) -> ApiError:
    return ApiError(500, f"internal error (request id {rid}; the server's log has the details)", kind="server_error")


def _error(exc: ApiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
    return JSONResponse(exc.body(), exc.status, headers=headers)


class _Record:
    """What the request's log line says (filled in as the request goes)."""

    def __init__(self, request: Request):
        self.rid, self.request, self.started = uuid.uuid4().hex[:12], request, time.perf_counter()
        self.model, self.status, self.tokens = "-", 0, (0, 0)

    def write(self) -> None:
        log.info("%s %s %s model=%s status=%d prompt_tokens=%d completion_tokens=%d seconds=%.3f", self.rid,
                 self.request.method, self.request.url.path, self.model, self.status, *self.tokens,
                 time.perf_counter() - self.started)


class _Wake:
    """A job's ``wake``: sets an asyncio event from the engine's thread, so that waiting
    for an answer holds no thread."""

    def __init__(self):
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()

    def __call__(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


async def _next_piece(job: Job, request: Request):
    """The job's next piece (text, final Completion or exception); None once the client
    has gone."""
    while True:
        try:
            return job.pieces.get_nowait()
        except queue.Empty:
            pass
        job.wake.event.clear()
        if not job.pieces.empty():  # put before the clear: its wake-up may come later
            continue
        try:
            await asyncio.wait_for(job.wake.event.wait(), POLL)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return None


async def _done(job: Job, request: Request):
    """The job's Completion (raising its error); None once the client has gone."""
    while True:
        piece = await _next_piece(job, request)
        if piece is None:
            return None
        if isinstance(piece, BaseException):
            raise piece
        if not isinstance(piece, str):
            return piece


def make_app(engine: Engine, api_key: str | None = None, max_tokens_cap: int = 512, client_timeout: float = 10.0) -> FastAPI:
    """The API over ``engine``. A request body must arrive within 3 x ``client_timeout``
    seconds (else 408)."""
    app = FastAPI(title="tasktune", docs_url=None, redoc_url=None, openapi_url=None)

    def authorise(request: Request) -> None:
        if not api_key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    async def body_of(request: Request) -> dict:
        length = request.headers.get("content-length")
        if length is None or not (length.isascii() and length.isdigit()):
            raise ApiError(411, "a JSON body with Content-Length is required")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        try:
            raw = await asyncio.wait_for(request.body(), 3 * client_timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {3 * client_timeout:.0f} s") from None
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # unknown route or method
        record = _Record(request)
        record.status = exc.status_code
        record.write()
        return _error(ApiError(exc.status_code, f"no route {request.method} {request.url.path}", code="unknown_url"))

    @app.get("/v1/models")
    async def models(request: Request):
        record = _Record(request)
        try:
            authorise(request)
            now = int(time.time())
            data = [{"id": name, "object": "model", "created": now, "owned_by": "tasktune"} for name in engine.models]
            record.status = 200
            return {"object": "list", "data": data}
        except ApiError as exc:
            record.status = exc.status
            return _error(exc)
        finally:
            record.write()

    async def complete(request: Request, chat: bool):
        record, streaming, jobs = _Record(request), False, []
        try:
            authorise(request)
            req = parse_request(engine, await body_of(request), chat, max_tokens_cap)
            record.model, jobs = req.served.name, req.jobs
            for job in jobs:
                job.wake = _Wake()
            try:
                engine.submit(*req.jobs)
            except Busy as exc:
                raise ApiError(429, f"the server is busy ({exc}); retry shortly", code="rate_limit_exceeded",
                               kind="rate_limit_error") from None
            except Expired as exc:
                raise ApiError(503, f"{exc}; retry shortly", kind="server_error") from None
            if req.stream:
                response = await _stream(req, request, record)
                streaming = isinstance(response, EventSourceResponse)
                return response
            return await _whole(req, request, record)
        except ApiError as exc:
            record.status = exc.status
            return _error(exc)
        except Exception:  # noqa: BLE001 - one failing request never takes the server down
            log.exception("request %s failed", record.rid)
            record.status = 500
            return _error(_internal(record.rid))
        finally:
            if not streaming:  # a stream writes its line when it ends, and cancels its jobs then
                for job in jobs:
                    job.cancelled.set()
                record.write()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    return app


async def _whole(req: ApiRequest, request: Request, record: _Record):
    choices, tokens = [], 0
    for i, job in enumerate(req.jobs):
        try:
            done = await _done(job, request)
        except Expired as exc:
            raise _overloaded(exc) from None
        if done is None:  # the client has gone: nobody reads an answer
            record.status = 499
            return JSONResponse({}, 499)
        text, stopped = cut_at_stop(done.text, req.stops)
        finish = "stop" if stopped else done.finish_reason
        tokens += done.tokens
        if req.chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                            "logprobs": None})
        else:
            choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
    prompt_tokens = len(req.jobs[0].ids)
    record.status, record.tokens = 200, (prompt_tokens, tokens)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
    return {"id": ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if req.chat else "text_completion", "created": int(time.time()),
            "model": req.served.name, "choices": choices, "usage": usage}


async def _stream(req: ApiRequest, request: Request, record: _Record):
    """The answer as server-sent events: each job's pieces as its choice index, one job
    after the other (the engine runs streams in turn). The first piece is awaited before
    the response begins, so a request that expired in the queue still gets its 503."""
    first = await _next_piece(req.jobs[0], request)
    if first is None:
        record.status = 499
        return JSONResponse({}, 499)
    if isinstance(first, Expired):
        raise _overloaded(first)
    ident = ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex[:24]
    obj, created, prompt_tokens = "chat.completion.chunk" if req.chat else "text_completion", int(time.time()), len(req.jobs[0].ids)

    def chunk(index: int, delta: str | None, finish: str | None, opening: bool = False) -> str:
        if req.chat:
            d = {"role": "assistant", "content": ""} if opening else ({"content": delta} if delta is not None else {})
            choice = {"index": index, "delta": d, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": index, "text": delta or "", "finish_reason": finish, "logprobs": None}
        return json.dumps({"id": ident, "object": obj, "created": created, "model": req.served.name, "choices": [choice]},
                          ensure_ascii=False)

    async def events():
        nonlocal first
        tokens = 0
        record.status = 200
        try:
            for index, job in enumerate(req.jobs):
                if req.chat:
                    yield chunk(index, None, None, opening=True)
                scanner, begun = StopScanner(req.stops), False
                while True:
                    piece = first if first is not None else await _next_piece(job, request)
                    first = None
                    if piece is None:  # the client has gone
                        record.status = 499
                        return
                    if isinstance(piece, BaseException):
                        if isinstance(piece, Expired):
                            error = _overloaded(piece)
                        else:
                            log.error("request %s: generation failed: %r", record.rid, piece)
                            error = ApiError(500, f"generation failed (request id {record.rid})", kind="server_error")
                        yield json.dumps({"error": error.body()["error"]})
                        yield "[DONE]"
                        return
                    if isinstance(piece, str) and not begun:  # leading blanks dropped, as in a whole answer
                        piece = piece.lstrip()
                        begun = bool(piece)
                        if not begun:
                            continue
                    if not isinstance(piece, str):  # the final Completion
                        rest = scanner.flush()
                        if rest:
                            yield chunk(index, rest, None)
                        yield chunk(index, None if req.chat else "", "stop" if scanner.stopped else piece.finish_reason)
                        tokens += piece.tokens
                        break
                    if scanner.stopped:  # the rest of a stopped answer: wait for its Completion
                        continue
                    text = scanner.feed(piece)
                    if text:
                        yield chunk(index, text, None)
                    if scanner.stopped:
                        job.cancelled.set()  # the answer has ended: the worker stops generating it
            record.tokens = (prompt_tokens, tokens)
            if req.usage:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
                yield json.dumps({"id": ident, "object": obj, "created": created, "model": req.served.name, "choices": [],
                                  "usage": usage})
            yield "[DONE]"
        except (asyncio.CancelledError, GeneratorExit):  # the client went away mid-stream
            record.status = 499
            raise
        except Exception:  # noqa: BLE001 - the headers are out: the error goes in the stream
            log.exception("request %s failed", record.rid)
            record.status = 500
            yield json.dumps({"error": _internal(record.rid).body()["error"]})
            yield "[DONE]"
        finally:  # however the stream ended (finished, failed, client gone), nothing more is generated for it
            for job in req.jobs:
                job.cancelled.set()
            record.write()

    return EventSourceResponse(events(), sep="\n", headers={"Cache-Control": "no-cache"})
