"""Reinforcement from the verifier: GRPO and rejection-sampling fine-tuning (expert
iteration), one sampling round per step.

A step draws ``batch_size / num_generations`` prompts, has the recipe's ``rollout``
sample ``num_generations`` completions of each and score them (the verifier, the step
verifier), turns the rewards into an advantage per completion token, and takes
``rl.num_iterations`` optimizer updates on those completions:

* **GRPO** (``objective: grpo``): each completion's advantage is its reward minus its
  group's mean (Dr. GRPO: not divided by the group's spread unless ``scale_rewards``);
  with ``step_credit`` a wrong completion's tokens before its first wrong step get a right
  answer's advantage, the wrong step's tokens a penalty at least as large, the rest none.
  The loss is PPO's clipped ratio to the sampling policy (log-probabilities at the
  sampling temperature), plus ``beta`` times the k3 estimate of the
  KL to the starting policy, normalised per token (DAPO) unless ``loss_type`` says otherwise.
* **Rejection sampling** (``objective: rft``): the verified-right completions (every step
  right, for worked answers) are trained on as SFT rows, each distinct one once.

Groups whose rewards all agree carry no advantage (but for step credit's, in a group of
wrong answers): they are not run through the model (the loss's token count still
includes them, so the figure is the same). The stage
imports nothing after ``train``: sampling and scoring come in as ``rollout``.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from tasktune.config.rl import RLConfig
from tasktune.config.train import TrainConfig
from tasktune.constants import IGNORE_INDEX
from tasktune.data.example import Example
from tasktune.encoding import pad_right
from tasktune.train.loop import LoopState, NonFiniteLoss, StepInfo, counted, prepare_optimizer, seconds_since
from tasktune.train.loss import token_logprobs
from tasktune.train.policy import Rollout, likelihood_loss, policy_loss, token_advantages, token_weights
from tasktune.train.schedule import Pace, lr_at, reschedule_message

__all__ = ["Source", "Reference", "rl_steps", "CATEGORY_FLOOR"]

CATEGORY_FLOOR = 0.1
"""``category_weights: errors``: the smallest share of a category's problems still asked
(one the model always gets right is asked at this rate)."""
_MEMORY = 0.8
"""Each step keeps this share of a category's running reward mean (the rest is the step's)."""


class Reference:
    """The starting policy's trainable tensors, kept aside; :meth:`swapped` puts them in
    for the reference pass of the KL term (an adapter's worth of copies, not a second model)."""

    def __init__(self, model):
        self.saved = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @contextmanager
    def swapped(self, model):
        params = {n: p for n, p in model.named_parameters() if n in self.saved}
        current = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.saved[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(current[n])


@dataclass
class _Row:
    """A completion going through the model: its ids, labels, advantages and weight."""

    ids: list[int]
    labels: list[int]
    adv: torch.Tensor
    weight: float
    old: torch.Tensor | None = None
    ref: torch.Tensor | None = None


def _rows(rollouts: list[Rollout], advs: list[torch.Tensor | None], weights: list[float], beta: float) -> list[_Row]:
    """The completions that move the loss (a non-zero advantage, or any with a KL term).
    Without a KL term a completion is cut after its last token with an advantage: what
    follows a wrong step (step credit) feeds no loss, and a causal model's earlier tokens
    do not depend on it."""
    rows = []
    for r, a, w in zip(rollouts, advs, weights):
        if a is None or not r.completion or (beta == 0 and not bool(a.any())):
            continue
        n = len(a) if beta > 0 else int(a.nonzero().max()) + 1
        rows.append(_Row(r.prompt + r.completion[:n], [IGNORE_INDEX] * len(r.prompt) + r.completion[:n], a[:n], w))
    rows.sort(key=lambda row: len(row.ids))
    return rows


def _weight(reward: float | None, how: str) -> float:
    """A category's weight from its recent reward (None: not seen yet, asked always)."""
    if reward is None:
        return 1.0
    return 1.0 - reward if how == "errors" else 4.0 * reward * (1.0 - reward)


class _Draw:
    """The step's prompts from the stream: as drawn, or (``rl.category_weights`` errors or
    spread) each kept with its category's chance (:func:`_weight` plus the floor); the coin
    is seeded by the draw's place in the stream, so a resumed run draws the same."""

    def __init__(self, stream: Iterator[Example], state: LoopState, rl: RLConfig, seed: int):
        self.stream, self.state, self.rl, self.seed = counted(stream, state), state, rl, seed

    def __call__(self, n: int) -> list[Example]:
        out: list[Example] = []
        while len(out) < n:
            example = next(self.stream)
            if self.rl.category_weights != "uniform":
                chance = min(1.0, CATEGORY_FLOOR + _weight(self.state.rewards.get(example.category), self.rl.category_weights))
                if random.Random(f"{self.seed}-draw-{self.state.drawn}").random() >= chance:
                    continue
            out.append(example)
        return out

    def record(self, rollouts: list[Rollout]) -> None:
        by: dict[str, list[float]] = defaultdict(list)
        for r in rollouts:
            by[r.category].append(min(1.0, max(0.0, r.reward)))
        for cat, values in by.items():
            mean = sum(values) / len(values)
            old = self.state.rewards.get(cat)
            self.state.rewards[cat] = mean if old is None else _MEMORY * old + (1 - _MEMORY) * mean


def _figures(rollouts: list[Rollout], advs: list, rl: RLConfig, objective: str, kl: float | None) -> dict:
    """The step's log figures: rewards, groups without spread, lengths, steps."""
    rewards = [r.reward for r in rollouts]
    mean = sum(rewards) / len(rewards)
    size = rl.num_generations
    # A group's spread among the answers that are scored (not cut off at the cap and masked).
    groups = [[r.reward for r in rollouts[i : i + size] if not (r.truncated and rl.mask_truncated_completions)]
              for i in range(0, len(rollouts), size)]
    by: dict[str, list[float]] = defaultdict(list)
    for r in rollouts:
        by[r.category].append(r.reward)
    written = sum(r.steps_written for r in rollouts)
    out = {
        "reward_mean": round(mean, 4),
        "reward_std": round(math.sqrt(sum((x - mean) ** 2 for x in rewards) / len(rewards)), 4),
        "no_spread": round(sum(len(set(g)) <= 1 for g in groups) / len(groups), 4),
        "completion_length": round(sum(len(r.completion) for r in rollouts) / len(rollouts), 2),
        "truncated": round(sum(r.truncated for r in rollouts) / len(rollouts), 4),
        "trained": sum(a is not None and bool(a.any()) for a in advs),
        "reward_by_category": {c: round(sum(v) / len(v), 4) for c, v in sorted(by.items())},
    }
    if written:
        out["step_accuracy"] = round(sum(r.steps_right for r in rollouts) / written, 4)
    if kl is not None:
        out["kl"] = round(kl, 6)
    if objective == "rft":
        out["kept"] = out.pop("trained")
    return out


def _update(model, accelerator, rows: list[_Row], micro: int, rl: RLConfig, first: bool, kept: bool) -> tuple[float, float | None]:
    """Gradients of the step's loss over ``rows`` in micro-batches of ``micro``: the clipped
    policy loss, or for kept answers (rejection sampling) their negative log-likelihood; the
    first pass on a batch records each token's sampling-policy log-probability. Returns the
    loss and the mean KL estimate (None without a KL term)."""
    loss_total, kl_sum, kl_n = 0.0, 0.0, 0
    for start in range(0, len(rows), micro):
        part = rows[start : start + micro]
        logp = token_logprobs(model, _batch(part, accelerator.device), temperature=rl.temperature)
        sizes = [len(r.adv) for r in part]
        olds = torch.cat([r.old for r in part]) if not first else logp.detach()
        if first:
            for r, piece in zip(part, logp.detach().split(sizes)):
                r.old = piece
        ref = torch.cat([r.ref for r in part]) if rl.beta > 0 else None
        adv = torch.cat([r.adv for r in part]).to(logp.device)
        per_token, kl = likelihood_loss(logp, ref, rl.beta) if kept else policy_loss(logp, olds, adv, rl.epsilon, ref, rl.beta)
        weight = torch.cat([torch.full((n,), r.weight) for r, n in zip(part, sizes)]).to(logp.device)
        loss = (per_token * weight).sum()
        accelerator.backward(loss)
        loss_total += float(loss.detach())
        if kl is not None:
            kl_sum, kl_n = kl_sum + float(kl.detach().sum()), kl_n + kl.numel()
    return loss_total, (kl_sum / kl_n if kl_n else None)


def _batch(part: list[_Row], device: torch.device) -> dict[str, torch.Tensor]:
    """The rows right-padded (the pad id is masked out, its value unread), on ``device``."""
    return {k: v.to(device) for k, v in pad_right([r.ids for r in part], [r.labels for r in part], 0).items()}


@torch.no_grad()
def _reference_logprobs(model, rows: list[_Row], micro: int, reference: Reference, device: torch.device, temperature: float) -> None:
    with reference.swapped(model):
        for start in range(0, len(rows), micro):
            part = rows[start : start + micro]
            logp = token_logprobs(model, _batch(part, device), temperature=temperature)
            for r, piece in zip(part, logp.split([len(r.adv) for r in part])):
                r.ref = piece


@dataclass
class Source:
    """Where a step's completions come from: the problems, the recipe's ``rollout``
    (samples ``rl.num_generations`` completions of each example, grouped in order, at the
    given step, and scores them; seeded by the step, so a resumed run samples what the
    first would have), the completion cap (``dr_grpo``'s normaliser) and the run's seed
    (the weighted draw's coin flips)."""

    stream: Iterator[Example]
    rollout: Callable[[list[Example], int], list[Rollout]]
    cap: int = 256
    seed: int = 0


def _round(model, accelerator, optimizer, params, rows: list[_Row], cfg: TrainConfig, rl: RLConfig, step: int) -> tuple[float, float, float | None]:
    """The round's ``rl.num_iterations`` updates on its completions; returns the last
    update's loss, gradient norm and mean KL estimate."""
    loss, grad_norm, kl = 0.0, 0.0, None
    micro = max(1, cfg.batch_size // cfg.grad_accum)
    for iteration in range(rl.num_iterations if rows else 0):
        loss, kl = _update(model, accelerator, rows, micro, rl, first=iteration == 0, kept=cfg.objective == "rft")
        grad_norm = float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(step + 1, loss, grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm, kl


def _count(state: LoopState, rollouts: list[Rollout], rows: list[_Row], step: int) -> None:
    state.step, state.examples = step + 1, state.examples + len(rollouts)
    state.tokens += sum(len(r.prompt) + len(r.completion) for r in rollouts)
    state.supervised += sum(len(r.adv) for r in rows)
    state.computed += sum(len(r.ids) for r in rows)


def rl_steps(
    model,
    accelerator,
    source: Source,
    cfg: TrainConfig,
    rl: RLConfig,
    state: LoopState,
    groups: list[dict] | None = None,
    reference: Reference | None = None,
) -> Iterator[StepInfo]:
    """Train ``model`` by reinforcement (``cfg.objective`` grpo or rft) up to
    ``cfg.max_steps`` sampling rounds (fewer when ``cfg.max_minutes`` runs out), from
    ``state.step`` on; one :class:`StepInfo` per round, its ``figures`` the round's rewards.

    Args:
        model: The model with its adapter (the starting policy's weights loaded).
        accelerator: From :func:`make_accelerator` (one process).
        source: The problems and the rollout that samples and scores their completions.
        cfg, rl: The ``train`` and ``rl`` sections.
        state: As for :func:`train_steps` (``state.rewards`` holds the category means).
        groups: Optimizer parameter groups (``lr_scale`` each); None: all at scale 1.
        reference: The starting policy, for ``rl.beta > 0``.

    Raises:
        ValueError: more than one process (sampling runs in one).
        NonFiniteLoss: a round's loss or gradient norm is nan or inf (not applied).
    """
    if accelerator.num_processes > 1:
        raise ValueError(f"train.objective={cfg.objective} runs in one process today; start it with `tasktune train`, "
                         "not accelerate launch / torchrun")
    if rl.beta > 0 and reference is None:
        raise ValueError("rl.beta > 0 needs the starting policy (train.init_from) as the reference")
    model, optimizer, params = prepare_optimizer(model, accelerator, cfg, state, groups)
    model.train()
    draw = _Draw(source.stream, state, rl, source.seed)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=cfg.objective, unit="step")
    if state.total is None:
        state.total = cfg.max_steps
    pace = Pace(cfg, state.step)
    try:
        for step in range(state.step, cfg.max_steps):
            if step >= state.total:  # the time budget moved the end closer
                break
            started = time.perf_counter()
            rollouts = source.rollout(draw(cfg.batch_size // rl.num_generations), step)
            sampled = time.perf_counter() - started
            advs = token_advantages(rollouts, rl, cfg.objective)
            rows = _rows(rollouts, advs, token_weights(rollouts, advs, rl, source.cap), rl.beta)
            if rl.beta > 0 and rows:
                _reference_logprobs(model, rows, max(1, cfg.batch_size // cfg.grad_accum), reference, accelerator.device,
                                    rl.temperature)
            lr = lr_at(step, cfg, state.total)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            loss, grad_norm, kl = _round(model, accelerator, optimizer, params, rows, cfg, rl, step)
            _count(state, rollouts, rows, step)
            took = seconds_since(accelerator, started)
            state.seconds += took
            draw.record(rollouts)
            fits = pace.record(step, took, state.seconds, state.total)
            if fits != state.total:
                bar.write(reschedule_message(fits, cfg))
                state.total = fits
            figures = {**_figures(rollouts, advs, rl, cfg.objective, kl), "sample_seconds": round(sampled, 2),
                       "update_seconds": round(took - sampled, 2)}
            bar.update(1)
            bar.set_postfix(reward=f"{figures['reward_mean']:.3f}", lr=f"{lr:.2e}", no_spread=f"{figures['no_spread']:.2f}")
            yield StepInfo(step + 1, loss, lr, grad_norm, state.examples, state.tokens, state.supervised, state.seconds,
                           state.computed, state.padding, figures)
            if pace.spent(state.seconds):
                bar.write(f"train.max_minutes={cfg.max_minutes} reached after {step + 1} of {cfg.max_steps} steps")
                break
    finally:
        bar.close()
        model.eval()
