"""Causal-LM loss computed only where there is something to learn.

The vocabulary projection (576 x 49152 for SmolLM2, a fifth of a step's FLOPs at 24
tokens a row) runs only at the positions that predict a supervised token: for a short
arithmetic answer that is 5 of 24 positions. The model's own ``forward`` does it
through ``logits_to_keep`` (a 1-D tensor of positions), so DDP, PEFT and models with
scaled or capped logits see an ordinary call.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from tasktune.constants import IGNORE_INDEX

__all__ = ["supervised_loss_sum", "count_supervised"]


def count_supervised(labels: torch.Tensor) -> int:
    """Tokens that contribute to the loss (labels are aligned with inputs, not shifted)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def supervised_loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of token cross-entropies (float32) over supervised positions of ``batch``.

    Args:
        model: A causal LM (plain, PEFT-wrapped or DDP-wrapped).
        batch: ``input_ids``, ``attention_mask`` and ``labels`` of shape (B, T),
            labels aligned with the inputs (the model would shift them; we shift here).

    Returns:
        A scalar: divide by the number of supervised tokens of the whole optimizer step.
    """
    labels = batch["labels"]
    # keep[b, t]: position t of row b predicts a supervised token t+1.
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep[:, :-1]]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if _accepts_logits_to_keep(model):
        logits = model(**inputs, logits_to_keep=keep).logits  # (N, V), N = supervised tokens
    else:
        logits = model(**inputs).logits[keep]
    return F.cross_entropy(logits.float(), targets, reduction="sum")
