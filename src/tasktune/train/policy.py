"""What a sampled completion teaches: its advantage token by token (group-relative, with
step credit; or kept whole by rejection sampling), the clipped policy loss with its KL
term, and each token's weight in the step's loss (``rl.loss_type``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tasktune.config.rl import RLConfig

__all__ = ["Rollout", "token_advantages", "policy_loss", "likelihood_loss", "token_weights"]


@dataclass
class Rollout:
    """One sampled completion of a prompt, scored.

    Attributes:
        prompt: The rendered prompt's token ids.
        completion: The generated token ids, the stop token included when it ended.
        reward: What the reward gave it (the verifier: 1 right, 0 wrong).
        truncated: The cap cut it off (it never ended).
        category: The problem's category (per-category figures and weights).
        wrong_span: Tokens ``[start, end)`` of its first wrong step (the step verifier's,
            against the reference): None when every step is right or none is checked.
        steps_written: Steps written (worked answers; 0 otherwise).
        steps_right: Of them, right ones.
    """

    prompt: list[int]
    completion: list[int]
    reward: float
    truncated: bool = False
    category: str = "all"
    wrong_span: tuple[int, int] | None = None
    steps_written: int = 0
    steps_right: int = 0


def _masked(r: Rollout, rl: RLConfig) -> bool:
    return r.truncated and rl.mask_truncated_completions


def token_advantages(rollouts: list[Rollout], rl: RLConfig, objective: str) -> list[torch.Tensor | None]:
    """Each completion's advantage per token (float32, one per completion token), or None
    for a completion left out of the loss (cut off at the cap, or not kept by rejection
    sampling). ``rollouts`` come in groups of ``rl.num_generations``, one per prompt."""
    size = rl.num_generations
    out: list[torch.Tensor | None] = []
    for first in range(0, len(rollouts), size):
        group = rollouts[first : first + size]
        if objective == "rft":
            out += _kept(group, rl)
            continue
        scored = [r.reward for r in group if not _masked(r, rl)]
        mean = sum(scored) / len(scored) if scored else 0.0
        spread = torch.tensor(scored, dtype=torch.float64).std().item() if len(scored) > 1 else 0.0
        # A group without spread has no advantage to scale (step credit would blow it up).
        scale = 1.0 / (spread + 1e-4) if rl.scale_rewards and spread > 0 else 1.0
        for r in group:
            if _masked(r, rl):
                out.append(None)
                continue
            adv = torch.full((len(r.completion),), (r.reward - mean) * scale)
            if rl.step_credit and r.wrong_span is not None and r.reward < 1.0:  # a wrong answer's first wrong step
                start, end = r.wrong_span
                credit = 1.0 - mean
                adv[:start] = credit * scale  # the right steps before it: a right answer's credit
                # The wrong step: a wrong answer's penalty, and no smaller than that credit, so
                # that in a group of wrong answers (mean 0) the step that went wrong is still
                # pushed down as far as the steps before it are pushed up.
                adv[start:end] = -max(mean, credit) * scale
                adv[end:] = 0.0  # what follows a wrong step is neither
            out.append(adv)
    return out


def _kept(group: list[Rollout], rl: RLConfig) -> list[torch.Tensor | None]:
    """Rejection sampling: an advantage of 1 on each distinct verified completion."""
    seen: set[tuple[int, ...]] = set()
    out: list[torch.Tensor | None] = []
    for r in group:
        key = tuple(r.completion)
        good = r.reward >= 1.0 and not _masked(r, rl) and not (rl.rft_all_steps and r.wrong_span is not None)
        if good and key not in seen:
            seen.add(key)
            out.append(torch.ones(len(r.completion)))
        else:
            out.append(None)
    return out


def policy_loss(
    logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, epsilon: float, ref: torch.Tensor | None = None, beta: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token loss: PPO's clipped surrogate on the ratio to the sampling policy
    (``old``), plus ``beta`` times the k3 estimate of the KL to ``ref``; and that KL
    estimate per token (None without ``ref``). All tensors one value per token."""
    ratio = torch.exp(logp - old)
    return _with_kl(-torch.min(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv), logp, ref, beta)


def likelihood_loss(logp: torch.Tensor, ref: torch.Tensor | None = None, beta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rejection sampling's per-token loss: the kept answers' negative log-likelihood (SFT on
    them; the clipped surrogate with an advantage of 1 has its gradient on a first update, but
    its value is a constant -1, which tells the log nothing), plus ``beta`` times the KL term."""
    return _with_kl(-logp, logp, ref, beta)


def _with_kl(loss: torch.Tensor, logp: torch.Tensor, ref: torch.Tensor | None, beta: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``loss`` plus ``beta`` times the k3 estimate of the KL to ``ref``, and that estimate."""
    if ref is None:
        return loss, None
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    return loss + beta * kl, kl


def token_weights(rollouts: list[Rollout], advs: list[torch.Tensor | None], rl: RLConfig, cap: int) -> list[float]:
    """Each completion's per-token weight in the step's loss (``rl.loss_type``)."""
    scored = [(r, a) for r, a in zip(rollouts, advs) if a is not None]
    if not scored:
        return [0.0] * len(rollouts)
    if rl.loss_type == "dapo":
        total = sum(len(r.completion) for r, _ in scored)
        return [1.0 / total if a is not None else 0.0 for a in advs]
    if rl.loss_type == "dr_grpo":
        return [1.0 / (len(scored) * cap) if a is not None else 0.0 for a in advs]
    return [1.0 / (len(r.completion) * len(scored)) if a is not None else 0.0 for r, a in zip(rollouts, advs)]


