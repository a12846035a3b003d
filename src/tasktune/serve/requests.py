"""OpenAI API requests, independent of the web framework: the body checked and turned
into engine jobs, and errors in OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``. A completions prompt is rendered as one user turn with the model's chat
template, as ``tasktune predict`` does, since a chat-tuned model answers only inside its
template. Decoding is greedy unless the request gives a ``temperature`` above 0 (then
sampled, seeded by ``seed``, or by a seed of its own).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from typing import Any

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.serve.engine import Engine, Job, Served

__all__ = ["ApiError", "Request", "parse_request", "chat_example", "refuse_unsupported", "stop_strings", "MAX_BODY"]

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


@dataclass
class Request:
    """A checked request: the model, its jobs (one per choice), and how to answer."""

    served: Served
    jobs: list[Job]
    stream: bool
    usage: bool
    """Streamed: end with a usage chunk (``stream_options.include_usage``)."""
    stops: list[str]
    chat: bool


def parse_request(engine: Engine, body: dict, chat: bool, max_tokens_cap: int) -> Request:
    """A request body checked and turned into its jobs (``n`` of them, not yet queued).

    Raises:
        ApiError: what is wrong, naming the parameter.
    """
    refuse_unsupported(body)
    name = body.get("model")
    if not isinstance(name, str):
        raise ApiError(400, "model is required: one of " + ", ".join(engine.models), "model")
    served = engine.models.get(name)
    if served is None:
        raise ApiError(404, f"model {name!r} is not served here; available: {', '.join(engine.models)}", "model",
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
    if n > engine.max_queue:
        raise ApiError(400, f"n={n} is over this server's queue of {engine.max_queue}", "n")
    stops = stop_strings(body)
    asked = _number(body, "max_completion_tokens", int, 1) or _number(body, "max_tokens", int, 1)
    if asked is not None and asked > max_tokens_cap:
        raise ApiError(400, f"max_tokens={asked} is over this server's cap of {max_tokens_cap}", "max_tokens")
    max_tokens = asked or min(served.default_tokens, max_tokens_cap)
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
    return Request(served, jobs, stream, usage, stops, chat)
