"""Drive `tasktune chat` through a pseudo-terminal, as a person would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TASKTUNE = str(Path(sys.executable).with_name("tasktune"))


class Terminal:
    def __init__(self, *args: str):
        self.master, slave = pty.openpty()
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([TASKTUNE, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.buffer = b""

    def read_until(self, marker: bytes, timeout: float = 120.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {marker!r} in output: {self.buffer[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def send(self, text: str) -> None:
        os.write(self.master, text.encode("utf-8"))

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return code


def test_chat_streams_keeps_history_clears_and_exits(tiny_model_dirs):
    term = Terminal("chat", "--model", str(tiny_model_dirs["llama"]), "--max-new-tokens", "5")
    try:
        term.read_until(b"Ctrl-C stops an answer")
        term.read_until(b">>> ")
        term.send("1+1=\n")
        answer = term.read_until(b">>> ")
        assert answer.strip(), "no answer was printed"
        term.send("你好，世界\n")
        answer = term.read_until(b">>> ").decode("utf-8")  # strict: a broken multibyte char raises
        assert "\ufffd" not in answer
        term.send("clear\n")
        assert b"history cleared" in term.read_until(b">>> ")
        term.send("exit\n")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_chat_quits_on_ctrl_d(tiny_model_dirs):
    term = Terminal("chat", "--model", str(tiny_model_dirs["llama"]), "--max-new-tokens", "3")
    try:
        term.read_until(b">>> ")
        term.send("\x04")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
