"""Continuous (iteration-level) batching: rows join a running batch at the next decode
step and leave it as soon as they end.

The batch keeps one key/value cache, left-padded so that every row's next token sits in
the same column; a joining row is prefilled on its own (with the others that join at the
same step) and its cache is padded and stacked onto the running one; a row that ends or
is dropped is cut out, and columns that only padding uses any more are trimmed. Greedy
rows take the most likely token; a sampled row draws from its own seeded generator, so
its seed gives the same answer whatever else shares the batch.

Works with models whose forward takes ``cache``, ``position_ids`` and ``logits_to_keep``
and whose cache is a plain full-attention :class:`~transformers.DynamicCache` (Llama,
Qwen2, GLM, ...; every tasktune adapter on them): see :func:`supports`. Context a model
puts in the cache before the prompt itself (tasktune's trained prefix) counts as each
row's first tokens. PEFT's prompt-learning models bring a cache of their own and are
not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tasktune.config import GenerateConfig
from tasktune.encoding import pad_left
from tasktune.model.forward import forward_parameters, unwrapped

__all__ = ["Row", "RunningBatch", "supports"]


def supports(model) -> bool:
    """Whether :class:`RunningBatch` can run ``model`` (else use batched ``generate``)."""
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return False
    base = unwrapped(model)
    if not {"cache", "position_ids", "logits_to_keep", "attention_mask"} <= forward_parameters(model):
        return False
    try:  # full attention in every layer: sliding windows and recurrent state are cut differently
        return all(type(layer) is DynamicLayer for layer in DynamicCache(config=base.config).layers)
    except Exception:  # noqa: BLE001 - a config transformers cannot build a cache for
        return False


class _Growing(DynamicLayer):
    """A cache layer that writes new keys and values into room kept after them, instead of
    concatenating the whole cache again at every step (as :class:`DynamicLayer` does).
    When the batch changes (rows leave or join) the keys are replaced, and the next
    update copies them once into a new buffer."""

    ROOM = 64  # tokens of room added when a buffer is made

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.keys.numel() == 0:  # the first tokens: a buffer for them and room after
            self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        length, new = self.keys.shape[-2], key_states.shape[-2]
        buffers = getattr(self, "_buffers", None)
        if not (buffers is not None and self._within(buffers[0], self.keys) and length + new <= buffers[0].shape[-2]):
            shape = (*self.keys.shape[:-2], length + new + self.ROOM, self.keys.shape[-1])
            buffers = (self.keys.new_empty(shape), self.values.new_empty(shape))
            buffers[0][..., :length, :] = self.keys
            buffers[1][..., :length, :] = self.values
            self._buffers = buffers
        buffers[0][..., length : length + new, :] = key_states
        buffers[1][..., length : length + new, :] = value_states
        self.keys, self.values = buffers[0][..., : length + new, :], buffers[1][..., : length + new, :]
        return self.keys, self.values

    @staticmethod
    def _within(buffer: torch.Tensor, keys: torch.Tensor) -> bool:
        """``keys`` is still the front of ``buffer`` (not replaced since the last update)."""
        return keys.data_ptr() == buffer.data_ptr() and keys.shape[:-2] == buffer.shape[:-2] and keys.stride() == buffer.stride()


def _new_cache(config) -> DynamicCache:
    cache = DynamicCache(config=config)
    cache.layers = [_Growing() for _ in cache.layers]
    return cache


@dataclass(eq=False)
class Row:
    """One answer being generated: its prompt, cap and sampling, and what it has so far."""

    prompt: list[int]
    max_tokens: int
    sampling: GenerateConfig | None = None
    """None or ``do_sample: false``: greedy."""
    tokens: list[int] = field(default_factory=list)
    """Generated so far; the stop token, once drawn, is the last one."""
    finish_reason: str | None = None
    """``stop`` or ``length`` once ended; None while running."""

    def __post_init__(self) -> None:
        self.generator = None
        if self.sampling is not None and self.sampling.do_sample:
            self.generator = torch.Generator().manual_seed(self.sampling.seed)


def _choose(rows: list[Row], logits: torch.Tensor) -> list[int]:
    """Each row's next token from its row of ``logits`` (rows, vocabulary)."""
    chosen = logits.argmax(-1).tolist()
    for i, row in enumerate(rows):
        if row.generator is None:
            continue
        scores = logits[i].float() / max(row.sampling.temperature, 1e-5)
        if row.sampling.top_p < 1.0:  # nucleus: drop the least likely tokens outside top_p of the mass
            ordered, order = scores.sort()
            outside = ordered.softmax(-1).cumsum(-1) <= 1 - row.sampling.top_p
            outside[-1] = False
            scores[order[outside]] = float("-inf")
        chosen[i] = int(torch.multinomial(scores.softmax(-1).cpu(), 1, generator=row.generator))
    return chosen


class RunningBatch:
    """The rows being generated together on one model (no more than ``max_rows``)."""

    def __init__(self, model, stop_id: int, pad_id: int, max_rows: int = 32):
        self.model, self.stop_id, self.pad_id, self.max_rows = model, stop_id, pad_id, max_rows
        self.device = next(model.parameters()).device
        self.config = unwrapped(model).config
        self.context = int(getattr(self.config, "max_position_embeddings", 0) or 1 << 30)
        self.rows: list[Row] = []
        self.cache = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)  # 1: a real token in the cache

    def __len__(self) -> int:
        return len(self.rows)

    def room(self) -> int:
        return self.max_rows - len(self.rows)

    def _end(self, row: Row, token: int) -> bool:
        """Record ``token``; True when ``row`` has ended with it."""
        row.tokens.append(token)
        if token == self.stop_id:
            row.finish_reason = "stop"
        elif len(row.tokens) >= row.max_tokens or len(row.prompt) + len(row.tokens) >= self.context:
            row.finish_reason = "length"
        return row.finish_reason is not None

    @torch.inference_mode()
    def admit(self, rows: list[Row]) -> list[tuple[Row, int]]:
        """Prefill ``rows`` and draw their first tokens; those that go on join the batch.

        Returns:
            Each admitted row with its first token (a row whose first token ends it is done).
        """
        if not rows:
            return []
        if len(rows) > self.room():
            raise ValueError(f"{len(rows)} rows do not fit: {self.room()} places left")
        if min(row.max_tokens for row in rows) < 1:
            raise ValueError("max_tokens must be at least 1 for every row")
        batch = {k: v.to(self.device) for k, v in pad_left([r.prompt for r in rows], self.pad_id).items()}
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        cache = _new_cache(self.config)
        out = self.model(**batch, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        tokens = _choose(rows, out.logits[:, -1])
        mask = batch["attention_mask"]
        extra = out.cache.get_seq_length() - mask.shape[1]
        if extra > 0:  # the model put context of its own before the prompts (a trained prefix)
            mask = torch.cat([mask.new_ones(len(rows), extra), mask], 1)
        going = [i for i, (row, t) in enumerate(zip(rows, tokens)) if not self._end(row, t)]
        if going:
            self._join([rows[i] for i in going], out.cache, mask, going)
        return list(zip(rows, tokens))

    def _join(self, rows: list[Row], cache, mask: torch.Tensor, keep: list[int]) -> None:
        if len(keep) < mask.shape[0]:
            index = torch.tensor(keep, device=self.device)
            cache.batch_select_indices(index)
            mask = mask[index]
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            for mine, theirs in zip(self.cache.layers, cache.layers):
                mine.keys = torch.cat([_pad(mine.keys, width, 2), _pad(theirs.keys, width, 2)])
                mine.values = torch.cat([_pad(mine.values, width, 2), _pad(theirs.values, width, 2)])
            self.mask = torch.cat([_pad(self.mask, width, 1), _pad(mask, width, 1)])
        self.rows += rows

    @torch.inference_mode()
    def step(self) -> list[tuple[Row, int]]:
        """One decode step for every row: each row with its new token. Rows that end with
        it leave the batch."""
        if not self.rows:
            return []
        last = torch.tensor([[r.tokens[-1]] for r in self.rows], device=self.device)
        positions = self.mask.sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, torch.ones_like(last)], 1)
        out = self.model(input_ids=last, attention_mask=self.mask, position_ids=positions, cache=self.cache,
                         use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        rows = self.rows
        tokens = _choose(rows, out.logits[:, -1])
        ended = {i for i, (row, t) in enumerate(zip(rows, tokens)) if self._end(row, t)}
        if ended:
            self._keep([i for i in range(len(rows)) if i not in ended])
        return list(zip(rows, tokens))

    def drop(self, rows: list[Row]) -> None:
        """Take ``rows`` out of the batch unfinished (their client has gone)."""
        gone = {id(r) for r in rows}
        self._keep([i for i, r in enumerate(self.rows) if id(r) not in gone])

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, self.mask[:0, :0]
            return
        index = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        unused = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns only padding uses
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]


def _pad(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``x`` left-padded with zeros along ``dim`` to ``width``."""
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim)
