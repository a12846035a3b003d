"""Generation: batched and left-padded for evaluation, token-streamed for chat.

Greedy by default, so that scores reproduce; sampling is opt-in (``generate.do_sample``)
and seeded: batch ``i`` of a call samples after ``torch.manual_seed(seed + i)``.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import torch
from tqdm.auto import tqdm

from tasktune.config import GenerateConfig
from tasktune.encoding import pad_left

__all__ = ["generate_batch", "stream_generate"]


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


@torch.inference_mode()
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
    """Completions of token-id prompts, in the order given: greedy, or sampled when
    ``sampling.do_sample``.

    Prompts are sorted by length so that each left-padded batch wastes little;
    every row stops at ``stop_id`` or after ``max_new_tokens`` tokens.

    Args:
        model: Causal LM (any adapter applied), on its device.
        tokenizer: Decodes the new tokens (special tokens skipped).
        prompts: Rendered prompt token ids, one list per row.
        stop_id: End-of-turn token id.
        max_new_tokens: Hard cap per row.
        batch_size: Rows per ``generate`` call.
        desc: Progress-bar label; None hides the bar.
        sampling: The ``generate`` section; None or ``do_sample: false``: greedy.

    Returns:
        The decoded completions, whitespace-stripped.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    config = _generation_config(model, max_new_tokens, stop_id, pad_id, sampling)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, unit="ex", disable=desc is None, leave=False)
    for number, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        if config.do_sample:
            torch.manual_seed(sampling.seed + number)
        batch = {k: v.to(device) for k, v in pad_left([prompts[i] for i in rows], pad_id).items()}
        ids = model.generate(**batch, generation_config=config)
        new = ids[:, batch["input_ids"].shape[1] :]
        for i, seq in zip(rows, new.tolist()):
            if stop_id in seq:  # generate keeps the stop token; the answer ends before it
                seq = seq[: seq.index(stop_id)]
            out[i] = tokenizer.decode(seq, skip_special_tokens=True).strip()
        bar.update(len(rows))
    bar.close()
    model.train(was_training)
    return out


class _TextPieces:
    """A ``generate`` streamer that queues decoded text once it is whole characters,
    so a multi-byte character split across tokens (common in Chinese) is never shown
    broken."""

    def __init__(self, tokenizer, stop_id: int, pieces: queue.Queue):
        self.tokenizer, self.stop_id, self.pieces = tokenizer, stop_id, pieces
        self.ids: list[int] = []
        self.shown = ""
        self.prompt_seen = False

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.shown) and (final or not text.endswith("\ufffd")):
            self.pieces.put(text[len(self.shown) :])
            self.shown = text

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the prompt
            self.prompt_seen = True
            return
        self.ids += [t for t in value.reshape(-1).tolist() if t != self.stop_id]
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)


def stream_generate(
    model, tokenizer, prompt: list[int], stop_id: int, max_new_tokens: int, sampling: GenerateConfig | None = None
) -> Iterator[str]:
    """Yield a completion (greedy unless ``sampling.do_sample``) piece by piece while it
    is generated.

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
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    ids = torch.tensor([prompt], device=device)

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    generation_config=_generation_config(model, max_new_tokens, stop_id, pad_id, sampling),
                    streamer=_TextPieces(tokenizer, stop_id, pieces),
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
