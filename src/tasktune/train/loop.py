"""The training loop: plain PyTorch on accelerate, one optimizer step per iteration.

:func:`train_steps` is a generator: it yields a :class:`StepInfo` after every
optimizer step and the caller (the recipe) decides what to log, save or evaluate,
so nothing happens out of sight. The same code runs on one CPU and, through
``accelerate launch``/``torchrun``, on many processes.

``train.batch_size`` is the global batch: every process draws the same examples from
the same stream and trains on its share of each micro-batch, so N processes take the
same steps on the same data as one (the loss curve equals a single process's within
float noise), and a run's result does not depend on how many processes ran it.

Everything needed to continue a run exactly is in :class:`LoopState`: the step, the
examples drawn from the stream, running totals and the optimizer; the checkpoint stage
writes it and ``--resume`` hands it back.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import torch
from tqdm.auto import tqdm

from tasktune.config.encoding import EncodingConfig
from tasktune.config.train import TrainConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, Encoded, pad_id_for, pad_right
from tasktune.train.batches import EncodeCounts, computed_tokens, global_batches, packed_parts, packing_matches
from tasktune.train.loss import count_supervised, supervised_loss_sum
from tasktune.train.schedule import Pace, lr_at, reschedule_message
from tasktune.train.shard import broadcast_from_main, is_sharded, shard_optimizer_state

__all__ = ["StepInfo", "EncodeCounts", "LoopState", "NonFiniteLoss", "TrainingStopped", "make_accelerator", "prepare_optimizer",
           "train_steps", "counted", "seconds_since"]


class TrainingStopped(RuntimeError):
    """Training cannot go on (the loss diverged, memory ran out); the message says
    where the run stands and what to change."""


class NonFiniteLoss(TrainingStopped):
    """The loss or the gradient norm of a step was nan or inf; the step was not applied."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        self.step = step
        super().__init__(f"the loss is {loss} (gradient norm {grad_norm}) at step {step}; that step was not applied")


@dataclass
class LoopState:
    """Where a run stands after ``step`` optimizer steps: what a checkpoint holds and
    ``--resume`` hands back to :func:`train_steps`.

    Attributes:
        step: Optimizer steps done.
        drawn: Examples drawn from the training stream (overlong ones included); a
            resumed run skips that many, so no example is trained on twice.
        computed: Token positions run through the model (each micro-batch as wide as
            the columns that reach its loss); ``padding`` of them were padding.
        total: The step count the schedule ends on (``max_steps``, or fewer when
            ``max_minutes`` cannot hold them); None: not started.
        optimizer_state: An optimizer ``state_dict`` to load when resuming; while
            training, :attr:`optimizer` is the live optimizer.
    """

    step: int = 0
    drawn: int = 0
    examples: int = 0
    tokens: int = 0
    supervised: int = 0
    computed: int = 0
    padding: int = 0
    seconds: float = 0.0
    total: int | None = None
    counts: EncodeCounts = field(default_factory=EncodeCounts)
    optimizer_state: dict | None = None
    optimizer: torch.optim.Optimizer | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    """RL: each category's recent reward mean (what ``rl.category_weights: errors`` draws by)."""

    def totals(self) -> dict:
        """The JSON-serialisable part (everything but the optimizer)."""
        return {
            "step": self.step, "drawn": self.drawn, "examples": self.examples, "tokens": self.tokens,
            "supervised": self.supervised, "computed": self.computed, "padding": self.padding, "seconds": self.seconds, "total": self.total,
            "dropped": self.counts.dropped, "truncated": self.counts.truncated,
            **({"rewards": self.rewards} if self.rewards else {}),
        }

    @classmethod
    def from_totals(cls, totals: dict, optimizer_state: dict | None) -> "LoopState":
        counts = EncodeCounts(totals.pop("dropped", 0), totals.pop("truncated", 0))
        return cls(**totals, counts=counts, optimizer_state=optimizer_state)


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
    computed_tokens: int = 0
    padding_tokens: int = 0
    figures: dict = field(default_factory=dict)
    """Figures of the step the loop's kind adds to its log line (an RL step's rewards)."""


def make_accelerator(cfg: TrainConfig, seed: int, dtype: torch.dtype = torch.float32):
    """An :class:`accelerate.Accelerator` for this process, seeds set.

    ``threads`` caps torch's CPU threads (the default uses every core). Base weights in
    float16 or bfloat16 on a GPU train under autocast of that precision (float16 with
    loss scaling); :func:`train_steps` keeps the trainable weights in float32, and the
    loss is computed in float32 either way: the tutorial's "fp16 weights, fp32 loss".
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, set_seed

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if _env_flag("ACCELERATE_USE_DEEPSPEED"):
        raise ValueError("DeepSpeed is not supported by tasktune; shard with FSDP2 instead (parameters, gradients "
                         "and optimizer state, as ZeRO-3 does): accelerate launch --config_file "
                         "configs/accelerate/fsdp.yaml -m tasktune train CONFIG")
    gpu = torch.cuda.is_available()
    mixed = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "no") if gpu else "no"
    # accelerate sets up multi-process CPU training (gloo) only when told it is on CPUs.
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(mixed_precision=mixed, cpu=several and not gpu)
    if _env_flag("ACCELERATE_USE_FSDP") and several and accelerator.distributed_type != DistributedType.FSDP:
        # accelerate shards only on accelerators and silently falls back to DDP on CPUs;
        # FSDP2 itself runs on CPUs too (gloo), so it is set up as asked.
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin()
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.state.fsdp_plugin.fsdp_version != 2:
        raise ValueError("FSDP version 1 is not supported by tasktune: set fsdp_version: 2 in the accelerate config "
                         "(as configs/accelerate/fsdp.yaml does), or FSDP_VERSION=2 with torchrun")
    set_seed(seed + accelerator.process_index)
    return accelerator


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def _float32_trainable(params: list[torch.nn.Parameter]) -> None:
    """Trainable weights held in float16/bfloat16 become float32 (optimizer updates far
    smaller than a 16-bit weight's last digit would vanish)."""
    for p in params:
        if p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()


def counted(stream: Iterator[Example], state: LoopState) -> Iterator[Example]:
    """``stream`` after the ``state.drawn`` examples a resumed run already drew; counts on."""
    for _ in range(state.drawn):
        next(stream)
    for example in stream:
        state.drawn += 1
        yield example


def _agreed(accelerator, flag: bool) -> bool:
    """``flag`` where every process has it (one decision for all)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([int(flag)], device=accelerator.device), "sum").item()
                == accelerator.num_processes)




@dataclass
class _Cut:
    """How a step's global batch is cut: ``accum`` micro-batches of ``micro`` rows, each
    shared out over ``procs`` processes; this one (``rank``) takes rows ``mine`` of each."""

    accum: int
    micro: int
    procs: int
    rank: int

    @property
    def mine(self) -> slice:
        return slice(self.rank * self.micro // self.procs, (self.rank + 1) * self.micro // self.procs)


class _Steps:
    """One optimizer step's forward and backward passes (the update is the caller's).

    The step's rows are padded once, so every process counts the same supervised tokens;
    each micro-batch's share is then cut to its own width (padded) or packed end to end
    (``train.packing``, trusted only once :func:`packing_matches` says so on this model).
    """

    def __init__(self, model, accelerator, cfg: TrainConfig, pad_id: int):
        self.model, self.accelerator, self.pad_id = model, accelerator, pad_id
        procs = accelerator.num_processes
        self.cut = _Cut(cfg.grad_accum, cfg.batch_size // cfg.grad_accum, procs, accelerator.process_index)
        # One process only: under DDP the prefix would be a second forward before backward.
        self.share = cfg.share_prefix and procs == 1 and not cfg.gradient_checkpointing
        self.packing, self.packing_checked = cfg.packing, False

    def __call__(self, rows: list[Encoded], state: LoopState, bar) -> tuple[float, int]:
        """Gradients of ``rows`` (the global batch) accumulated; returns the step's loss
        (summed over processes) and its supervised tokens."""
        cut, accelerator = self.cut, self.accelerator
        if cut.accum > 1:
            # Shortest rows first: each micro-batch is then computed only as wide as
            # its own longest row; the step's summed loss and gradients are the same.
            rows.sort(key=lambda r: len(r.input_ids))
        step_batch = pad_right([r.input_ids for r in rows], [r.labels for r in rows], self.pad_id)
        n_sup = max(1, count_supervised(step_batch["labels"]))
        state.tokens += int(step_batch["attention_mask"].sum())
        if self.packing and not self.packing_checked:  # once, on this model, before it is trusted
            self._check_packing(rows, bar)
        if self.packing:
            parts, computed = packed_parts(rows, cut.micro, cut.rank, cut.accum, cut.procs)
            padding = 0
        else:
            parts = [{k: v[j * cut.micro : (j + 1) * cut.micro][cut.mine] for k, v in step_batch.items()} for j in range(cut.accum)]
            computed, padding = computed_tokens(step_batch, cut.accum, cut.procs)
        state.computed += computed
        state.padding += padding
        loss_total = torch.zeros((), dtype=torch.float32)
        for j, part in enumerate(parts):
            batch = {k: v.to(accelerator.device) for k, v in part.items()}
            # Gradients are averaged over processes only on the last micro-batch.
            with accelerator.no_sync(self.model) if j < cut.accum - 1 else nullcontext():
                loss = supervised_loss_sum(self.model, batch, self.share) / n_sup
                accelerator.backward(loss * cut.procs)  # DDP averages over processes; we want the sum
            loss_total += loss.detach().float().cpu()
        if cut.procs > 1:
            loss_total = accelerator.reduce(loss_total.to(accelerator.device), "sum").cpu()
        return float(loss_total), n_sup

    def _check_packing(self, rows: list[Encoded], bar) -> None:
        self.packing_checked = True
        half = self.accelerator.mixed_precision != "no"
        share = rows[: self.cut.micro][self.cut.mine]
        self.packing = _agreed(self.accelerator, packing_matches(self.model, share, self.pad_id, half))
        self.share = self.share and not self.packing
        if not self.packing:
            bar.write("train.packing: on this model packed rows give another loss than padded rows (a prefix "
                      "adapter's cache, or a model that does not tell packed rows apart by their position ids); "
                      "it trains padded")


def prepare_optimizer(model, accelerator, cfg: TrainConfig, state: LoopState, groups: list[dict] | None):
    """The optimizer over ``groups``, both through ``accelerator.prepare`` (a resumed
    run's optimizer state loaded); returns the model, the optimizer and its parameters."""
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError("the model has no trainable parameters; check adapter settings")
    _float32_trainable(params)
    procs = accelerator.num_processes
    if cfg.batch_size % (cfg.grad_accum * procs):
        raise ValueError(f"train.batch_size={cfg.batch_size} must split evenly into train.grad_accum="
                         f"{cfg.grad_accum} micro-batches over {procs} process(es); use a multiple of {cfg.grad_accum * procs}")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.adam_beta1, cfg.adam_beta2))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if procs > 1 and accelerator.distributed_type == "FSDP":
        broadcast_from_main(params)  # one initialisation for all (DDP does this itself)
    model, optimizer = accelerator.prepare(model, optimizer)
    # FSDP replaces the parameters by sharded ones (the optimizer is switched over).
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if state.optimizer_state is not None:
        optimizer.load_state_dict(shard_optimizer_state(optimizer, state.optimizer_state))
        state.optimizer_state = None
    state.optimizer = optimizer
    return model, optimizer, params


def seconds_since(accelerator, started: float) -> float:
    """Seconds since ``started``; over processes their mean, one clock for all (every
    process must end and reschedule on the same step)."""
    took = time.perf_counter() - started
    if accelerator.num_processes > 1:
        took = float(accelerator.reduce(torch.tensor([took], device=accelerator.device), "mean").cpu())
    return took


def train_steps(
    model,
    accelerator,
    encoder: ChatEncoder,
    stream: Iterator[Example],
    cfg: TrainConfig,
    enc: EncodingConfig,
    state: LoopState,
    groups: list[dict] | None = None,
) -> Iterator[StepInfo]:
    """Train ``model``'s trainable parameters up to ``cfg.max_steps`` optimizer steps
    (fewer when ``cfg.max_minutes`` runs out first), from ``state.step`` on.

    Each step draws ``batch_size`` examples (the global batch) and splits them into
    ``grad_accum`` micro-batches, each shared out over the processes; the summed token
    loss is divided by the supervised tokens of the whole step, so 4 x 1 accumulation,
    a batch of 4 and 2 processes x 2 are the same step.

    Args:
        model: Model with its adapter applied (frozen base, trainable adapter).
        accelerator: From :func:`make_accelerator`.
        encoder: Renders and labels examples.
        stream: Endless training examples, from the start (a resumed run skips what
            ``state`` says was drawn).
        cfg: The ``train`` section.
        enc: The ``encoding`` section (length limit, overlong policy).
        state: A fresh :class:`LoopState`, or one read from a checkpoint; kept current
            after every step (it is what a checkpoint saves).
        groups: Optimizer parameter groups, each with an ``lr_scale`` multiplying the
            scheduled learning rate; None: every trainable parameter at scale 1.

    Yields:
        One :class:`StepInfo` per optimizer step.

    Raises:
        NonFiniteLoss: a step's loss or gradient norm is nan or inf (not applied).
        ValueError: the batch does not split over accumulation and processes.
    """
    model, optimizer, params = prepare_optimizer(model, accelerator, cfg, state, groups)
    model.train()
    forward_backward = _Steps(model, accelerator, cfg, pad_id_for(encoder.tokenizer, encoder.stop_id))
    batches = global_batches(counted(stream, state), encoder, enc, cfg.batch_size, state.counts)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", unit="step", disable=not accelerator.is_local_main_process)
    if is_sharded(model) and accelerator.is_main_process:
        tqdm.write(f"parameters, gradients and optimizer state sharded by FSDP2 over {accelerator.num_processes} processes",
                   file=sys.stderr)
    if state.total is None:
        state.total = cfg.max_steps
    pace = Pace(cfg, state.step)
    try:
        for step in range(state.step, cfg.max_steps):
            if step >= state.total:  # the time budget moved the end closer
                break
            started = time.perf_counter()
            lr = lr_at(step, cfg, state.total)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            loss, n_sup = forward_backward(next(batches), state, bar)
            grad_norm = float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf))
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLoss(step + 1, loss, grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step, state.examples, state.supervised = step + 1, state.examples + cfg.batch_size, state.supervised + n_sup
            took = seconds_since(accelerator, started)
            state.seconds += took
            fits = pace.record(step, took, state.seconds, state.total)
            if fits != state.total:
                bar.write(reschedule_message(fits, cfg))
                state.total = fits
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{state.examples / state.seconds:.1f}")
            yield StepInfo(step + 1, loss, lr, grad_norm, state.examples, state.tokens, state.supervised, state.seconds,
                           state.computed, state.padding)
            if pace.spent(state.seconds):
                bar.write(f"train.max_minutes={cfg.max_minutes} reached after {step + 1} of {cfg.max_steps} steps")
                break
    finally:  # also when the caller stops early (closes the generator)
        bar.close()
        if cfg.gradient_checkpointing:
            accelerator.unwrap_model(model).gradient_checkpointing_disable()
        model.eval()
