"""The training loop: plain PyTorch on accelerate, one optimizer step per iteration.

:func:`train_steps` is a generator: it yields a :class:`StepInfo` after every
optimizer step and the caller (the recipe) decides what to log, save or evaluate,
so nothing happens out of sight. The same code runs on one CPU and, through
``accelerate launch``/``torchrun``, on many processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

from tasktune.config import EncodingConfig, TrainConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_right
from tasktune.train.loss import count_supervised, supervised_loss_sum
from tasktune.train.schedule import lr_at, steps_that_fit

__all__ = ["StepInfo", "EncodeCounts", "make_accelerator", "train_steps"]


@dataclass
class EncodeCounts:
    """Examples that did not go in whole: dropped or truncated for being overlong."""

    dropped: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class StepInfo:
    """State after optimizer step ``step`` (1-based); counts are running totals and
    ``seconds`` is training time so far, without the caller's work between steps."""

    step: int
    loss: float
    lr: float
    grad_norm: float
    examples: int
    tokens: int
    supervised_tokens: int
    seconds: float


def make_accelerator(cfg: TrainConfig, seed: int):
    """An :class:`accelerate.Accelerator` for this process, seeds set.

    ``threads`` caps torch's CPU threads (the default uses every core).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator()
    set_seed(seed + accelerator.process_index)
    return accelerator


def _batches(
    stream: Iterator[Example], encoder: ChatEncoder, enc: EncodingConfig, size: int, pad_id: int, counts: EncodeCounts
) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches of ``size`` encoded examples; overlong ones counted."""
    while True:
        ids: list[list[int]] = []
        labels: list[list[int]] = []
        while len(ids) < size:
            encoded = encoder.encode(next(stream), enc.max_length, enc.overlong)
            if encoded is None:
                counts.dropped += 1
                if counts.dropped > 1000 and counts.dropped > 10 * (counts.truncated + 1) and not ids:
                    raise ValueError(
                        f"{counts.dropped} examples in a row are longer than encoding.max_length="
                        f"{enc.max_length}; raise it or set encoding.overlong: truncate"
                    )
                continue
            counts.truncated += encoded.truncated
            ids.append(encoded.input_ids)
            labels.append(encoded.labels)
        yield pad_right(ids, labels, pad_id)


def train_steps(
    model,
    accelerator,
    encoder: ChatEncoder,
    stream: Iterator[Example],
    cfg: TrainConfig,
    enc: EncodingConfig,
    counts: EncodeCounts,
    groups: list[dict] | None = None,
) -> Iterator[StepInfo]:
    """Train ``model``'s trainable parameters for ``cfg.max_steps`` optimizer steps
    (fewer when ``cfg.max_minutes`` runs out first).

    Each step draws ``batch_size`` examples, splits them into ``grad_accum``
    micro-batches and divides the summed token loss by the supervised tokens of the
    whole step, so 4 x 1 accumulation equals a batch of 4.

    Args:
        model: Model with its adapter applied (frozen base, trainable adapter).
        accelerator: From :func:`make_accelerator`.
        encoder: Renders and labels examples.
        stream: Endless training examples.
        cfg: The ``train`` section.
        enc: The ``encoding`` section (length limit, overlong policy).
        counts: Filled with dropped/truncated counts as the loop goes.
        groups: Optimizer parameter groups, each with an ``lr_scale`` multiplying the
            scheduled learning rate; None: every trainable parameter at scale 1.

    Yields:
        One :class:`StepInfo` per optimizer step.
    """
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError("the model has no trainable parameters; check adapter settings")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.adam_beta1, cfg.adam_beta2))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pad_id = encoder.tokenizer.pad_token_id
    pad_id = encoder.stop_id if pad_id is None else pad_id
    micro = cfg.batch_size // cfg.grad_accum
    # One process only: under DDP the prefix would be a second forward before backward.
    share = cfg.share_prefix and accelerator.num_processes == 1 and not cfg.gradient_checkpointing
    batches = _batches(stream, encoder, enc, micro, pad_id, counts)
    bar = tqdm(total=cfg.max_steps, desc="train", unit="step", disable=not accelerator.is_local_main_process)
    # Seconds of this loop's own work: time the caller spends between steps (saving a
    # checkpoint, evaluating) is not training time and does not use up max_minutes.
    seconds = 0.0
    examples = tokens = supervised = 0
    deadline = 60.0 * cfg.max_minutes if cfg.max_minutes else float("inf")
    # The schedule is a function of the step (runs reproduce); when max_minutes cannot
    # hold max_steps at the recent pace, the run is shortened to what fits and the decay
    # still ends at its floor. Checked every 10% of max_steps on the pace since the last
    # check (the first steps, slow while memory is allocated, never decide alone); a
    # later check may give back steps a passing slowdown took.
    total = cfg.max_steps
    checks = {cfg.max_steps * k // 10 for k in range(1, 10)} - {0, 1}
    window, window_steps = 0.0, 0
    try:
        for step in range(cfg.max_steps):
            if step >= total:
                break
            started = time.perf_counter()
            lr = lr_at(step, cfg, total)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            parts = [next(batches) for _ in range(cfg.grad_accum)]
            n_sup = max(1, sum(count_supervised(b["labels"]) for b in parts))
            loss_total = 0.0
            for batch in parts:
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                loss = supervised_loss_sum(model, batch, share) / n_sup
                accelerator.backward(loss)
                loss_total += loss.item()
                tokens += int(batch["attention_mask"].sum())
            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else torch.tensor(0.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            examples += cfg.batch_size
            supervised += n_sup
            took = time.perf_counter() - started
            seconds += took
            if step:  # the first step, slow while memory is allocated, is not the pace
                window, window_steps = window + took, window_steps + 1
            if step + 1 in checks and step + 1 < total:
                fits = steps_that_fit(step + 1, seconds, window, window_steps, cfg, cfg.max_steps)
                if fits != total:
                    bar.write(f"train.max_minutes={cfg.max_minutes}: at this pace {fits} of {cfg.max_steps} steps fit; "
                              "the schedule now ends there")
                    total = fits
                window, window_steps = 0.0, 0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_total:.4f}", lr=f"{lr:.2e}", ex_s=f"{examples / seconds:.1f}")
            yield StepInfo(step + 1, loss_total, lr, float(grad_norm), examples, tokens, supervised, seconds)
            if seconds >= deadline:
                bar.write(f"train.max_minutes={cfg.max_minutes} reached after {step + 1} of {cfg.max_steps} steps")
                break
    finally:  # also when the caller stops early (closes the generator)
        bar.close()
        if cfg.gradient_checkpointing:
            accelerator.unwrap_model(model).gradient_checkpointing_disable()
        model.eval()
