"""Generation: batched and left-padded for evaluation, token-streamed for chat.

Greedy by default, so that scores reproduce; sampling is opt-in (``generate.do_sample``)
and seeded. Models the running batch can drive (:func:`continuous.supports`) generate
with continuous batching: a row that ends leaves the batch and the next prompt takes its
place, and prompt ``i`` of a call samples from its own generator seeded ``seed + i``.
Others go through Hugging Face ``generate`` in fixed batches, batch ``i`` sampling after
``torch.manual_seed(seed + i)``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, replace
from typing import Iterator

import torch
from tqdm.auto import tqdm

from tasktune.config import GenerateConfig
from tasktune.encoding import pad_id_for, pad_left
from tasktune.generate.continuous import Row, RunningBatch, supports
from tasktune.generate.llamacpp import GgufModel

__all__ = ["Completion", "generate_completions", "generate_batch", "stream_generate"]


def _generation_config(model, max_new_tokens: int, stop_id: int, pad_id: int, sampling: GenerateConfig | None):
    from transformers import GenerationConfig

    sample = sampling is not None and sampling.do_sample
    knobs = {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0} if sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        **knobs,
        num_beams=1,
        eos_token_id=stop_id,
        pad_token_id=pad_id,
        bos_token_id=getattr(model.config, "bos_token_id", None),
    )


@dataclass(frozen=True)
class Completion:
    """One generated answer: its text (whitespace-stripped, special tokens skipped), the
    tokens generated (the stop token included), and why it ended: ``stop`` (the stop
    token) or ``length`` (the row's cap); ``ids`` are those tokens."""

    text: str
    tokens: int
    finish_reason: str
    ids: tuple[int, ...] = ()


@torch.inference_mode()
def generate_completions(
    model,
    tokenizer,
    prompts: list[list[int]],
    stop_id: int,
    max_new_tokens: int | list[int],
    batch_size: int = 64,
    desc: str | None = None,
    sampling: GenerateConfig | None = None,
) -> list[Completion]:
    """Completions of token-id prompts, in the order given: greedy, or sampled when
    ``sampling.do_sample``.

    Prompts are taken in length order so that each left-padded prefill wastes little;
    every row stops at ``stop_id`` or after its ``max_new_tokens`` tokens.

    Args:
        model: Causal LM (any adapter applied), on its device; or a GGUF file in llama.cpp.
        tokenizer: Decodes the new tokens (special tokens skipped).
        prompts: Rendered prompt token ids, one list per row.
        stop_id: End-of-turn token id.
        max_new_tokens: Hard cap, for every row or one per row.
        batch_size: Most rows generated together.
        desc: Progress-bar label; None hides the bar.
        sampling: The ``generate`` section; None or ``do_sample: false``: greedy.
    """
    caps = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
    if len(caps) != len(prompts) or min(caps, default=1) < 1:
        raise ValueError(f"max_new_tokens must be at least 1 for every prompt, got {max_new_tokens}")
    if isinstance(model, GgufModel):  # a GGUF file in llama.cpp: greedy only (its eval forces it)
        if sampling is not None and sampling.do_sample:
            raise ValueError("generate.do_sample: answers from a GGUF file are greedy; set generate.do_sample=false")
        with tqdm(total=len(prompts), desc=desc, unit="ex", disable=desc is None, leave=False) as bar:
            tokens = model.greedy(prompts, stop_id, caps, batch_size, bar.update)
        return [_completion(tokenizer, seq, stop_id) for seq in tokens]
    was_training = model.training
    model.eval()
    pad_id = pad_id_for(tokenizer, stop_id)
    bar = tqdm(total=len(prompts), desc=desc, unit="ex", disable=desc is None, leave=False)
    try:
        if supports(model):
            tokens = _continuous(model, prompts, stop_id, pad_id, caps, batch_size, sampling, bar)
        else:
            tokens = _batched(model, prompts, stop_id, pad_id, caps, batch_size, sampling, bar)
    finally:
        bar.close()
        model.train(was_training)
    return [_completion(tokenizer, seq, stop_id) for seq in tokens]


def _completion(tokenizer, seq: list[int], stop_id: int) -> Completion:
    if stop_id in seq:  # the answer ends before the stop token
        end = seq.index(stop_id)
        return Completion(tokenizer.decode(seq[:end], skip_special_tokens=True).strip(), end + 1, "stop", tuple(seq[: end + 1]))
    return Completion(tokenizer.decode(seq, skip_special_tokens=True).strip(), len(seq), "length", tuple(seq))


def _continuous(model, prompts, stop_id, pad_id, caps, batch_size, sampling, bar) -> list[list[int]]:
    """Each prompt's new tokens, by continuous batching: prompts join in length order (so
    that each prefill pads little), a quarter of a batch at a time once rows have left."""
    sample = sampling is not None and sampling.do_sample
    rows = [Row(p, cap, replace(sampling, seed=sampling.seed + i) if sample else None)
            for i, (p, cap) in enumerate(zip(prompts, caps))]
    waiting = sorted(rows, key=lambda r: len(r.prompt))[::-1]
    batch = RunningBatch(model, stop_id, pad_id, batch_size)
    chunk = max(1, batch_size // 4)
    while waiting or batch:
        if waiting and (not batch or batch.room() >= min(chunk, len(waiting))):
            joining = [waiting.pop() for _ in range(min(batch.room(), len(waiting)))]
            bar.update(sum(r.finish_reason is not None for r, _ in batch.admit(joining)))
        bar.update(sum(r.finish_reason is not None for r, _ in batch.step()))
    return [r.tokens for r in rows]


def _batched(model, prompts, stop_id, pad_id, caps, batch_size, sampling, bar) -> list[list[int]]:
    """Each prompt's new tokens (at most its cap), by ``generate`` on length-sorted batches."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for number, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        config = _generation_config(model, max(caps[i] for i in rows), stop_id, pad_id, sampling)
        if config.do_sample:
            torch.manual_seed(sampling.seed + number)
        batch = {k: v.to(device) for k, v in pad_left([prompts[i] for i in rows], pad_id).items()}
        # synced_gpus=False: transformers would otherwise sync every step with the other
        # processes of an FSDP run, which wait while the main one evaluates whole weights.
        ids = model.generate(**batch, generation_config=config, synced_gpus=False)
        new = ids[:, batch["input_ids"].shape[1] :]
        for i, seq in zip(rows, new.tolist()):
            seq = seq[: caps[i]]  # a longer row cap in the batch does not lengthen this row
            out[i] = seq[: seq.index(stop_id) + 1] if stop_id in seq else seq  # no padding after the stop
        bar.update(len(rows))
    return out


def generate_batch(
    model,
    tokenizer,
    prompts: list[list[int]],
    stop_id: int,
    max_new_tokens: int,
    batch_size: int = 64,
    desc: str | None = None,
    sampling: GenerateConfig | None = None,
) -> list[str]:
    """The texts of :func:`generate_completions` (same arguments)."""
    done = generate_completions(model, tokenizer, prompts, stop_id, max_new_tokens, batch_size, desc, sampling)
    return [c.text for c in done]


class _TextPieces:
    """A ``generate`` streamer that queues decoded text once it is whole characters,
    so a multi-byte character split across tokens (common in Chinese) is never shown
    broken."""

    def __init__(self, tokenizer, stop_id: int, pieces: queue.Queue):
        self.tokenizer, self.stop_id, self.pieces = tokenizer, stop_id, pieces
        self.ids: list[int] = []
        self.shown = ""
        self.prompt_seen = False
        self.generated = 0  # tokens, the stop token included
        self.stopped = False

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.shown) and (final or not text.endswith("\ufffd")):
            self.pieces.put(text[len(self.shown) :])
            self.shown = text

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the prompt
            self.prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        if self.stopped:  # generate pads after the stop token
            return
        if self.stop_id in tokens:
            tokens = tokens[: tokens.index(self.stop_id)]
            self.stopped = True
            self.generated += 1
        self.generated += len(tokens)
        self.ids += tokens
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)


def stream_generate(
    model,
    tokenizer,
    prompt: list[int],
    stop_id: int,
    max_new_tokens: int,
    sampling: GenerateConfig | None = None,
    stats: dict | None = None,
) -> Iterator[str]:
    """Yield a completion (greedy unless ``sampling.do_sample``) piece by piece while it
    is generated. When it ends, ``stats`` (if given) receives ``tokens`` (generated, the
    stop token included) and ``finish_reason`` (``stop`` or ``length``).

    Generation runs in a worker thread; when the consumer stops early (Ctrl-C in
    chat, a closed connection), the worker is told to stop at its next token.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList

    pieces: queue.Queue = queue.Queue()
    cancelled = threading.Event()

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

    device = next(model.parameters()).device
    pad_id = pad_id_for(tokenizer, stop_id)
    ids = torch.tensor([prompt], device=device)

    streamer = _TextPieces(tokenizer, stop_id, pieces)

    def work() -> None:
        try:
            if sampling is not None and sampling.do_sample:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    generation_config=_generation_config(model, max_new_tokens, stop_id, pad_id, sampling),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                )
        except BaseException as exc:  # handed to the consumer, re-raised there
            pieces.put(exc)
        pieces.put(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while (piece := pieces.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece
            yield piece
    finally:
        cancelled.set()
        worker.join()
        if stats is not None:
            stats.update(tokens=streamer.generated, finish_reason="stop" if streamer.stopped else "length")
