"""Greedy answers from a GGUF file through llama.cpp (the ``llama-cpp-python`` binding).

An exported file is checked where users will run it: the same prompts, answered by
llama.cpp's own graph and kernels from the file's own weights and tokenizer. The binding's
high-level calls decode one sequence at a time; this drives its low-level API with many
sequences in one batch (continuous batching: a row that ends frees its sequence and the
next prompt's tokens join the following decode), greedy by argmax as tasktune's own
generation is.

Prompts are token ids; :meth:`GgufModel.tokenize` turns a rendered prompt into ids by
llama.cpp's tokenizer with special tokens parsed (``<|im_start|>`` one control token, not
text: the binding's ``generate`` leaves them unparsed and its answers go wrong). The export's
check counts prompts whose ids agree with it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tasktune.checkpoint.gguf import LLAMA_CPP_MISSING, cores, llama_cpp_available, llama_cpp_binding

__all__ = ["GgufModel", "llama_cpp_available", "LLAMA_CPP_MISSING"]

_MAX_SEQUENCES = 256
"""llama.cpp's most sequences in one context (LLAMA_MAX_SEQ): a larger batch decodes in turns."""


@dataclass
class _Row:
    index: int
    prompt: list[int]
    cap: int
    tokens: list[int] = field(default_factory=list)
    seq: int = -1
    pos: int = 0


class GgufModel:
    """A GGUF file loaded in llama.cpp, answering token-id prompts greedily.

    Args:
        path: The ``.gguf`` file.
        threads: CPU threads (default: every core this process may use).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the binding is missing, or llama.cpp cannot load the file.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        self._L = llama_cpp_binding()
        self._L.llama_backend_init()
        self.threads = threads or cores()
        self._model = self._L.llama_model_load_from_file(str(self.path).encode(), self._L.llama_model_default_params())
        if not self._model:
            raise ValueError(f"{self.path}: llama.cpp could not load this file (see its log above)")
        self._vocab = self._L.llama_model_get_vocab(self._model)
        self.n_vocab = self._L.llama_vocab_n_tokens(self._vocab)

    def metadata(self, key: str) -> str | None:
        """A metadata value of the file as text (None when absent)."""
        buf = ctypes.create_string_buffer(1 << 20)
        n = self._L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8") if n >= 0 else None

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's token ids of ``text``, special tokens parsed, no BOS added."""
        raw = text.encode("utf-8")
        ids = (self._L.llama_token * (len(raw) + 8))()
        n = self._L.llama_tokenize(self._vocab, raw, len(raw), ids, len(ids), False, True)
        if n < 0:
            raise RuntimeError(f"llama.cpp tokenizer needs {-n} slots for a text of {len(raw)} bytes")
        return list(ids[:n])

    def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens`` (control tokens left out), as llama.cpp renders each piece."""
        out = bytearray()
        buf = ctypes.create_string_buffer(256)
        for t in tokens:
            n = self._L.llama_token_to_piece(self._vocab, t, buf, len(buf), 0, False)
            out += buf.raw[:n]
        return out.decode("utf-8", errors="replace")

    def greedy(self, prompts: list[list[int]], stop_id: int, caps: list[int], batch_size: int = 32,
               done: Callable[[int], None] | None = None) -> list[list[int]]:
        """Each prompt's new tokens (its stop token included when reached, at most its cap).

        Args:
            prompts: Token ids per row.
            stop_id: End-of-turn token.
            caps: Most new tokens per row.
            batch_size: Most sequences decoded together.
            done: Called with the number of rows that just ended (a progress bar's update).
        """
        L = self._L
        rows = [_Row(i, p, c) for i, (p, c) in enumerate(zip(prompts, caps))]
        if not rows:
            return []
        if not all(prompts):
            raise ValueError(f"prompt {[len(p) for p in prompts].index(0)} is empty: llama.cpp answers after a prompt")
        batch_size = max(1, min(batch_size, len(rows), _MAX_SEQUENCES))
        longest = max(len(p) for p in prompts) + max(caps)
        n_batch = max(2048, longest + batch_size)
        params = L.llama_context_default_params()
        params.n_ctx = batch_size * longest + 256
        params.n_batch, params.n_ubatch, params.n_seq_max = n_batch, 512, batch_size
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = True  # one cache for all rows: 1.3-1.9x faster than a cache per row on short prompts
        params.no_perf = True
        ctx = L.llama_init_from_model(self._model, params)
        if not ctx:
            raise ValueError(f"{self.path}: llama.cpp could not make a context of {params.n_ctx} tokens")
        batch = L.llama_batch_init(n_batch, 0, 1)
        try:
            self._decode_all(ctx, batch, rows, stop_id, batch_size, n_batch, done)
        finally:
            L.llama_batch_free(batch)
            L.llama_free(ctx)
        return [r.tokens for r in rows]

    def _decode_all(self, ctx, batch, rows: list[_Row], stop_id: int, batch_size: int, n_batch: int,
                    done: Callable[[int], None] | None) -> None:
        L = self._L
        memory = L.llama_get_memory(ctx)
        waiting = sorted(rows, key=lambda r: len(r.prompt), reverse=True)  # shortest first, from the end
        free = list(range(batch_size))[::-1]
        running: list[_Row] = []
        while waiting or running:
            slots: list[tuple[int, _Row]] = []  # (index in the batch whose logits are read, row)
            n = 0
            for r in running:
                n = self._put(batch, n, r.tokens[-1], r.pos, r.seq, True)
                r.pos += 1
                slots.append((n - 1, r))
            while waiting and free and n + len(waiting[-1].prompt) <= n_batch:
                r = waiting.pop()
                r.seq = free.pop()
                for j, t in enumerate(r.prompt):
                    n = self._put(batch, n, t, j, r.seq, j == len(r.prompt) - 1)
                r.pos = len(r.prompt)
                slots.append((n - 1, r))
                running.append(r)
            batch.n_tokens = n
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"{self.path}: llama.cpp could not decode a batch of {n} tokens")
            ended = 0
            for i, r in slots:
                logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                r.tokens.append(int(logits.argmax()))
                if r.tokens[-1] == stop_id or len(r.tokens) >= r.cap:
                    L.llama_memory_seq_rm(memory, r.seq, -1, -1)
                    free.append(r.seq)
                    running.remove(r)
                    ended += 1
            if done and ended:
                done(ended)

    @staticmethod
    def _put(batch, n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq
        batch.logits[n] = logits
        return n + 1

    def close(self) -> None:
        if getattr(self, "_model", None):
            self._L.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        self.close()
