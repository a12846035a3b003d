"""Padding, with the side in the name: right for training, left for generation; or no
padding at all: rows packed end to end."""

from __future__ import annotations

import torch

from tasktune.constants import IGNORE_INDEX

__all__ = ["pad_right", "pad_left", "pack"]


def pad_right(
    input_ids: list[list[int]], labels: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad a training batch.

    Returns:
        ``input_ids`` and ``labels`` (padding labelled IGNORE_INDEX) and
        ``attention_mask``, each of shape (batch, longest).
    """
    width = max(len(x) for x in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    labs = torch.full((len(input_ids), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, (x, y) in enumerate(zip(input_ids, labels)):
        ids[row, : len(x)] = torch.tensor(x)
        labs[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labs}


def pad_id_for(tokenizer, stop_id: int) -> int:
    """The id that pads a batch: the tokenizer's pad token, or the stop token when it has
    none (padding is masked, so any id works; this one is always in the vocabulary)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id


def pad_left(input_ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for batched generation: every row's last token is aligned.

    Returns:
        ``input_ids`` and ``attention_mask`` of shape (batch, longest).
    """
    width = max(len(x) for x in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, x in enumerate(input_ids):
        ids[row, width - len(x) :] = torch.tensor(x)
        mask[row, width - len(x) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def pack(input_ids: list[list[int]], labels: list[list[int]]) -> dict[str, torch.Tensor]:
    """Training rows end to end in one sequence, no padding.

    Position ids restart at 0 with every row, which is how transformers' models tell
    packed rows apart when no ``attention_mask`` is given: each token then attends only
    within its own row, at the positions it has alone. A row's first token is not a
    target of the row before it (its label is IGNORE_INDEX).

    Returns:
        ``input_ids``, ``labels`` and ``position_ids`` of shape (1, total tokens).
    """
    ids, labs, positions = [], [], []
    for x, y in zip(input_ids, labels):
        ids += x
        labs += [IGNORE_INDEX] + list(y[1:])
        positions += range(len(x))
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": torch.tensor([labs], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
    }
