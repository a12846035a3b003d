"""Greedy generation: batched and left-padded for evaluation, token-streamed for chat."""

from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from tasktune.encoding import pad_left

__all__ = ["generate_batch", "stream_generate"]


def _greedy_config(model, max_new_tokens: int, stop_id: int, pad_id: int):
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
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
) -> list[str]:
    """Greedy completions of token-id prompts, in the order given.

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

    Returns:
        The decoded completions, whitespace-stripped.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    config = _greedy_config(model, max_new_tokens, stop_id, pad_id)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, unit="ex", disable=desc is None, leave=False)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in pad_left([prompts[i] for i in rows], pad_id).items()}
        ids = model.generate(**batch, generation_config=config)
        new = ids[:, batch["input_ids"].shape[1] :]
        for i, seq in zip(rows, new):
            out[i] = tokenizer.decode(seq, skip_special_tokens=True).strip()
        bar.update(len(rows))
    bar.close()
    model.train(was_training)
    return out


@torch.inference_mode()
def stream_generate(model, tokenizer, prompt: list[int], stop_id: int, max_new_tokens: int) -> Iterator[str]:
    """Yield the completion piece by piece as greedy decoding produces it.

    Text is yielded only once it decodes to whole characters, so a multi-byte
    character split across tokens (common in Chinese) is never printed broken.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    past = None
    generated: list[int] = []
    shown = ""
    for _ in range(max_new_tokens):
        out = model(input_ids=ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = int(out.logits[0, -1].argmax())
        if token == stop_id or token == tokenizer.eos_token_id:
            break
        generated.append(token)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        if not text.endswith("\ufffd") and len(text) > len(shown):
            yield text[len(shown) :]
            shown = text
        ids = torch.tensor([[token]], device=device)
    text = tokenizer.decode(generated, skip_special_tokens=True)
    if len(text) > len(shown):
        yield text[len(shown) :]
