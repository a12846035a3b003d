"""The OpenAI-compatible server: a queue-and-batch engine over ``generate``, and a thin HTTP front."""

from tasktune.serve.engine import Engine, Job, Served
from tasktune.serve.openai_http import ApiError, make_server, serve_forever

__all__ = ["Engine", "Job", "Served", "ApiError", "make_server", "serve_forever"]
