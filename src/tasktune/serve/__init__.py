"""The OpenAI-compatible server: a queue-and-batch engine over ``generate``, the requests checked
independently of the web framework, and a thin FastAPI front served by uvicorn."""

from tasktune.serve.engine import Engine, Job, Served
from tasktune.serve.server import make_server, serve_forever
from tasktune.serve.requests import ApiError

__all__ = ["Engine", "Job", "Served", "ApiError", "make_server", "serve_forever"]
