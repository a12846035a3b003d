"""Causal-LM loss computed only where there is something to learn.

The vocabulary projection (576 x 49152 for SmolLM2, a fifth of a step's FLOPs at 24
tokens a row) runs only at the positions that predict a supervised token: for a short
arithmetic answer that is 5 of 24 positions. The model's own ``forward`` does it
through ``logits_to_keep`` (a 1-D tensor of positions), so DDP, PEFT and models with
scaled or capped logits see an ordinary call.

Tokens that every row of a batch starts with (the chat template's opening, a fixed
system prompt) can run once: the prefix goes through the model as a batch of one, its
key/value cache is repeated for every row, and the rest of the batch attends to it.
Gradients flow back through the repeated cache, so loss and gradients are those of the
full batch. The extra pass has a fixed cost, so a prefix shorter than
:data:`MIN_SHARED_PREFIX` tokens takes the plain path: on a 2-core CPU ChatML's 3-token
opening gained nothing (0.98x), SmolLM2's default system prompt made a step 2x faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasktune.constants import IGNORE_INDEX
from tasktune.model.forward import cache_argument, forward_parameters

__all__ = ["supervised_loss_sum", "token_logprobs", "supervised_logits", "count_supervised", "loss_width", "shared_prefix_length", "MIN_SHARED_PREFIX"]

MIN_SHARED_PREFIX = 8
"""Shortest shared prefix worth its own forward pass (tokens)."""


def count_supervised(labels: torch.Tensor) -> int:
    """Tokens that contribute to the loss (labels are aligned with inputs, not shifted)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def loss_width(labels: torch.Tensor) -> int:
    """Columns of a (B, T) batch that reach the loss: up to the last position that
    predicts a supervised token. In a causal model the positions after it feed no loss
    (padding past the longest row, the closing token, a template's tail), so they are cut."""
    predicts = labels[:, 1:] != IGNORE_INDEX
    return int(predicts.any(0).nonzero().max()) + 1 if bool(predicts.any()) else labels.shape[1]


def _accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in forward_parameters(model)


def shared_prefix_length(batch: dict[str, torch.Tensor], keep: torch.Tensor) -> int:
    """Leading positions where every row has the same real token and no row needs logits.

    Args:
        batch: Right-padded ``input_ids`` and ``attention_mask`` of shape (B, T).
        keep: (B, T) bool, True where a position's logits enter the loss.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    same = (ids == ids[:1]).all(0) & mask.all(0) & ~keep.any(0)
    return int(same.int().cumprod(0).sum())


def supervised_loss_sum(model, batch: dict[str, torch.Tensor], share_prefix: bool = False) -> torch.Tensor:
    """Sum of token cross-entropies (float32) over supervised positions of ``batch``.

    Args:
        model: A causal LM (plain, PEFT-wrapped or DDP-wrapped).
        batch: ``input_ids``, ``attention_mask`` and ``labels`` of shape (B, T),
            labels aligned with the inputs (the model would shift them; we shift here);
            or a packed batch (:func:`tasktune.encoding.pack`): ``position_ids`` in
            place of ``attention_mask``.
        share_prefix: Run the tokens all rows start with once (see the module doc).
            Needs a model that returns a ``transformers.Cache`` and no gradient
            checkpointing; other models take the plain path.

    Returns:
        A scalar: divide by the number of supervised tokens of the whole optimizer step.
    """
    logits, targets = supervised_logits(model, batch, share_prefix)
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def token_logprobs(model, batch: dict[str, torch.Tensor], share_prefix: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability (float32) of every supervised token of ``batch`` under ``model``,
    in row-major order of the supervised positions (as ``labels[:, 1:] != -100`` lists
    them): what a policy-gradient loss weighs token by token. ``temperature``: the logits
    divided by it first, the distribution completions were sampled from. Other arguments
    as :func:`supervised_loss_sum`."""
    logits, targets = supervised_logits(model, batch, share_prefix)
    return -F.cross_entropy(logits.float() / temperature, targets, reduction="none")


def supervised_logits(model, batch: dict[str, torch.Tensor], share_prefix: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (N, V) at the N positions that predict a supervised token, and those
    N tokens, in row-major order; the vocabulary projection runs only there."""
    labels = batch["labels"]
    # keep[b, t]: position t of row b predicts a supervised token t+1.
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep[:, :-1]]
    # The closing token of the longest row (1 of 19 tokens of a demo row), padding and
    # any tail the template adds after the answer feed no loss: those columns are cut.
    width = loss_width(labels)
    keep = keep[:, :width]
    # A packed batch (one row of rows end to end) has position ids and no attention mask.
    inputs = {k: batch[k][:, :width] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    rows = labels.shape[0]
    to_keep = _accepts_logits_to_keep(model)
    start = shared_prefix_length(inputs, keep) if share_prefix and rows > 1 else 0
    if start >= MIN_SHARED_PREFIX and to_keep:
        cache = _prefix_cache(model, batch["input_ids"][:1, :start], rows)
        if cache is not None:
            logits = model(
                input_ids=inputs["input_ids"][:, start:],
                attention_mask=inputs["attention_mask"],
                use_cache=True,
                logits_to_keep=keep[:, start:],
                **{cache_argument(model): cache},
            ).logits
            return logits, targets
    if "position_ids" in inputs:
        # Packed rows: transformers reads them from the position ids only without a cache.
        inputs["use_cache"] = False
    if to_keep:
        return model(**inputs, logits_to_keep=keep).logits, targets  # (N, V), N = supervised tokens
    return model(**inputs).logits[keep], targets


def _prefix_cache(model, prefix: torch.Tensor, rows: int):
    """The key/value cache of ``prefix`` (1, P), repeated for ``rows`` rows; None when
    the model does not return a ``transformers.Cache`` that can be repeated."""
    from transformers import Cache

    out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if not isinstance(cache, Cache) or not hasattr(cache, "batch_repeat_interleave"):
        return None
    cache.batch_repeat_interleave(rows)
    return cache
