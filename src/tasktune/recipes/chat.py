"""`tasktune chat --run DIR` (or `--model M`): an interactive, streaming, multi-turn chat."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from tasktune.config import load_config
from tasktune.data.answers import final_answer
from tasktune.data.example import Example
from tasktune.eval import check_steps
from tasktune.generate import stream_generate
from tasktune.recipes.common import Loaded, load_base, load_run, max_new_tokens_for, presented, shown_differently

__all__ = ["chat", "chat_loop", "answer_line"]

HELP = "Type a message. `clear` forgets the conversation, `exit` or Ctrl-D quits, Ctrl-C stops an answer."


def answer_line(reply: str) -> str | None:
    """``answer: VALUE`` for a worked answer (steps, then ``#### VALUE``), shown under the
    streamed steps so the value stands on a line of its own; None for other replies."""
    value = final_answer(reply) if "####" in reply and check_steps(reply) else None
    return f"answer: {value}" if value else None


def chat_loop(loaded: Loaded, max_new_tokens: int, out: TextIO = sys.stdout) -> None:
    """Read lines from stdin until ``exit``/EOF and stream each answer to ``out``."""
    history: list[tuple[str, str]] = []
    print(HELP, file=out, flush=True)
    while True:
        try:
            line = input("\n>>> ")
        except EOFError:
            print(file=out)
            break
        except KeyboardInterrupt:
            print(file=out)
            continue
        text = line.strip()
        if text == "exit":
            break
        if text == "clear":
            history.clear()
            print("(history cleared)", file=out, flush=True)
            continue
        if not text:
            continue
        example = Example(prompt=text, response="", history=tuple(history))
        ids = loaded.encoder.prompt_ids(example)
        pieces: list[str] = []
        live = not shown_differently(loaded.cfg)  # reversed digits are shown once complete
        try:
            for piece in stream_generate(loaded.model, loaded.tokenizer, ids, loaded.encoder.stop_id, max_new_tokens, loaded.cfg.generate):
                pieces.append(piece)
                if live:
                    print(piece, end="", file=out, flush=True)
        except KeyboardInterrupt:
            print(" [stopped]", end="", file=out)
        raw = "".join(pieces)
        if not live:
            print(presented(loaded.cfg, raw), end="", file=out)
        print(file=out, flush=True)
        line = answer_line(raw)
        if line:
            print(line, file=out, flush=True)
        history.append((text, raw))


def chat(
    run_dir: str | Path | None = None,
    model: str | None = None,
    max_new_tokens: int | None = None,
    overrides: list[str] | None = None,
) -> None:
    """Load a run (or a bare base model) and chat with it on the terminal; ``overrides``
    change the config for this session (e.g. ``quantization=int8``)."""
    if run_dir is not None:
        loaded = load_run(run_dir, overrides)
    else:
        loaded = load_base(load_config(None, ([f"model={model}"] if model else []) + list(overrides or [])))
    budget = max_new_tokens or max_new_tokens_for(loaded.cfg, loaded.tokenizer, [])
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops an answer even when the shell started us with SIGINT ignored
        # (a background job of a script), where Python would not raise KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    chat_loop(loaded, budget)
