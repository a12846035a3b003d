"""Stage 5 settings, ``train``: steps, batch, schedule, precision and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    objective: Literal["sft", "grpo", "rft"] = "sft"
    """sft: learn the data's answers; grpo: reinforcement from the task's verifier (sampled
    completions, group-relative advantages; settings in ``rl``); rft: rejection sampling,
    SFT on the model's own verified completions (expert iteration; settings in ``rl``)."""
    init_from: str | None = None
    """A finished run folder whose adapter this run starts from (its config must name the
    same model and method); null: a fresh adapter. An RL stage starts from an SFT run."""
    max_steps: int = 300
    """Optimizer steps (grpo/rft: sampling rounds)."""
    max_minutes: float | None = None
    """A time budget for training: when the recent pace (checked every 10% of max_steps,
    the first 10 steps left out) shows max_steps will not fit, the run is shortened to
    the steps that do and the decay still ends at its floor; a later check may give
    steps back. A projected shortfall under 5% of max_steps (less than the pace's own
    drift) keeps the schedule. Training stops at the budget in any case. A run that fits ends on
    max_steps and reproduces exactly. null: steps only."""
    batch_size: int = 16
    """grpo/rft: completions sampled per step. Examples per optimizer step, across all processes and micro-batches (the global batch);
    N processes each train on batch_size / N of them, so the run does not depend on N."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; batch_size is split into this many."""
    lr: float = 2e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a share of the peak."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    """AdamW first-moment decay (as in Hugging Face TrainingArguments)."""
    adam_beta2: float = 0.999
    """AdamW second-moment decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: off)."""
    save_every: int = 0
    """Save a checkpoint every N steps (0: only at the end)."""
    log_every: int = 10
    """Write a line to train_log.jsonl every N steps."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about 45% slower on a CPU."""
    threads: int | None = None
    """CPU threads for torch; null: all cores."""
    stop_at: float | None = None
    """End training as soon as an in-training evaluation (eval.every) reaches this value of
    eval.metric: exact match as a share (0.99), ROUGE/BLEU x 100 (e.g. 40); null: train to
    max_steps / max_minutes."""
    packing: bool = False
    """Each micro-batch's rows end to end in one sequence, no padding: position ids
    restart with every row, so each row attends only to itself (transformers' packed
    rows); same loss and gradients as padded rows. Checked on the model at the first
    step; a model where packed rows would see each other (a prefix adapter) trains padded."""
    share_prefix: bool = True
    """Run the tokens every row of a batch starts with (the chat template's opening, a
    fixed system prompt) once per batch instead of once per row; same loss and
    gradients, fewer FLOPs. Used in single-process runs without gradient checkpointing."""

    def problems(self) -> list[str]:
        p: list[str] = []
        if self.max_steps < 1:
            p.append(f"train.max_steps: must be at least 1, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            p.append(f"train.max_minutes: must be positive (or null), got {self.max_minutes}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            p.append(f"train.batch_size ({self.batch_size}) must be a positive multiple of train.grad_accum ({self.grad_accum})")
        if self.lr <= 0:
            p.append(f"train.lr: must be positive, got {self.lr}")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                p.append(f"train.{key}: must be within [0, 1), got {getattr(self, key)}")
        if self.stop_at is not None and not 0.0 < self.stop_at <= 100.0:
            p.append(f"train.stop_at: exact match within (0, 1] (e.g. 0.99) or ROUGE/BLEU within (0, 100], got {self.stop_at}")
        return p
