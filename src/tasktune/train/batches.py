"""A step's examples on their way into the model: drawn from the stream and encoded
(overlong ones counted), cut into micro-batches and process shares, padded or packed,
and the token positions each way computes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from tasktune.config.encoding import EncodingConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, Encoded, pack, pad_right
from tasktune.train.loss import loss_width, supervised_loss_sum

__all__ = ["EncodeCounts", "global_batches", "computed_tokens", "packed_parts", "packing_matches"]


@dataclass
class EncodeCounts:
    """Examples that did not go in whole: dropped or truncated for being overlong."""

    dropped: int = 0
    truncated: int = 0


def global_batches(
    stream: Iterator[Example], encoder: ChatEncoder, enc: EncodingConfig, size: int, counts: EncodeCounts
) -> Iterator[list[Encoded]]:
    """Lists of ``size`` encoded examples (one optimizer step's global batch); overlong
    ones are counted, and dropped or truncated by ``enc.overlong``."""
    while True:
        rows: list[Encoded] = []
        while len(rows) < size:
            encoded = encoder.encode(next(stream), enc.max_length, enc.overlong)
            if encoded is None:
                counts.dropped += 1
                if counts.dropped > 1000 and counts.dropped > 10 * (counts.truncated + 1) and not rows:
                    raise ValueError(
                        f"{counts.dropped} examples in a row are longer than encoding.max_length="
                        f"{enc.max_length}; raise it or set encoding.overlong: truncate"
                    )
                continue
            counts.truncated += encoded.truncated
            rows.append(encoded)
        yield rows


def computed_tokens(batch: dict[str, torch.Tensor], micro_batches: int, procs: int) -> tuple[int, int]:
    """Token positions a step runs through the model over every process, and how many
    of them are padding: each process's share of each micro-batch is cut to its own width."""
    rows = batch["labels"].shape[0] // micro_batches
    total = padding = 0
    for j in range(micro_batches):
        for rank in range(procs):
            part = slice(j * rows + rank * rows // procs, j * rows + (rank + 1) * rows // procs)
            width = loss_width(batch["labels"][part])
            mask = batch["attention_mask"][part, :width]
            total += mask.numel()
            padding += mask.numel() - int(mask.sum())
    return total, padding


def packed_parts(rows: list[Encoded], micro: int, rank: int, micro_batches: int, procs: int) -> tuple[list[dict], int]:
    """This process's micro-batches, each its share of rows packed end to end
    (:func:`tasktune.encoding.pack`), and the token positions the step runs over every
    process: each pack cut after its last position that feeds the loss (no padding)."""
    parts, total = [], 0
    for j in range(micro_batches):
        group = rows[j * micro : (j + 1) * micro]
        for r in range(procs):
            share = group[r * micro // procs : (r + 1) * micro // procs]
            packed = pack([x.input_ids for x in share], [x.labels for x in share])
            total += loss_width(packed["labels"])
            if r == rank:
                parts.append(packed)
    return parts, total


def packing_matches(model, rows: list[Encoded], pad_id: int, half: bool = False) -> bool:
    """Whether ``model`` computes the same loss for ``rows`` packed as padded: true for
    transformers' models that read packed rows from position ids; false where the rows
    would see each other (a prefix adapter's cache, a model that ignores position ids).
    Run without dropout; float32 to 1e-4, 16-bit weights or ``half`` (16-bit autocast)
    to 2e-2."""
    padded = pad_right([r.input_ids for r in rows], [r.labels for r in rows], pad_id)
    packed = pack([r.input_ids for r in rows], [r.labels for r in rows])
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            plain = supervised_loss_sum(model, {k: v.to(device) for k, v in padded.items()})
            joined = supervised_loss_sum(model, {k: v.to(device) for k, v in packed.items()})
    finally:
        model.train(training)
    half = half or any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    return bool(torch.isclose(joined.float(), plain.float(), rtol=2e-2 if half else 1e-4, atol=1e-4))
