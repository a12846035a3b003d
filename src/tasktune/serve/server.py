"""The HTTP server around :func:`tasktune.serve.openai_http.make_app`: uvicorn on a bound
socket, a graceful stop on SIGINT/SIGTERM (no new requests; the ones taken are finished),
and ``serve_forever`` for ``tasktune serve``."""

from __future__ import annotations

import logging
import signal
import socket
import threading

import uvicorn
from fastapi import FastAPI

from tasktune.serve.engine import Engine, Served
from tasktune.serve.openai_http import make_app

__all__ = ["make_server", "serve_forever", "Server"]

log = logging.getLogger("tasktune.serve")


class _Uvicorn(uvicorn.Server):
    """uvicorn's server with SIGINT/SIGTERM taken as 'stop taking requests, finish the
    ones taken' (uvicorn's graceful shutdown), without raising the signal again after."""

    def capture_signals(self):  # noqa: D102 - see the class
        import contextlib

        @contextlib.contextmanager
        def handlers():
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def stop(sig, frame):
                log.info("stopping: no new requests; finishing those taken")
                self.should_exit = True

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        return handlers()


class Server:
    """The API on ``host:port`` (port 0: any free one, see ``server_address``), served by
    uvicorn; ``serve_forever`` until ``shutdown`` or a signal."""

    def __init__(self, app: FastAPI, host: str, port: int, client_timeout: float):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(2048)  # clients wait in the backlog until uvicorn accepts
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_config=None, access_log=False, timeout_keep_alive=int(max(1, client_timeout)),
                                timeout_graceful_shutdown=60, lifespan="off")
        self._server = _Uvicorn(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        self._stopped.wait(timeout=90)

    def server_close(self) -> None:
        self.socket.close()


def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_tokens_cap: int = 512, client_timeout: float = 10.0) -> Server:
    """The API over ``engine`` bound to ``host:port`` (port 0: any free port)."""
    return Server(make_app(engine, api_key, max_tokens_cap, client_timeout), host, port, client_timeout)


def serve_forever(served: list[Served], host: str, port: int, api_key: str | None, max_tokens_cap: int,
                  max_queue: int = 64) -> None:
    """Answer requests for ``served`` until Ctrl-C or SIGTERM; then stop taking requests,
    finish the ones already taken, and say so."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine(served, max_queue=max_queue)
    server = make_server(engine, host, port, api_key, max_tokens_cap)
    names = ", ".join(engine.models)
    where = f"http://{server.server_address[0]}:{server.server_address[1]}/v1"
    print(f"serving {names} at {where} (OpenAI API; {'API key required' if api_key else 'no API key'}); "
          "Ctrl-C or SIGTERM stops", flush=True)
    try:
        server.serve_forever()
    finally:
        log.info("stopping the engine: finishing %d waiting", engine.waiting())
        engine.close()
        server.server_close()
        log.info("stopped")
