"""Stage 5 settings for reinforcement from the verifier, ``rl``: read when
``train.objective`` is ``grpo`` or ``rft``. Knobs that mean what TRL's ``GRPOConfig``
means carry its names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["RLConfig", "REWARDS"]

REWARDS = ("verifier", "random")
"""Built-in rewards (:attr:`RLConfig.reward`); anything else is ``module:function``."""

_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class RLConfig:
    num_generations: int = 8
    """Completions sampled per prompt (a group); train.batch_size counts completions, so
    a step asks train.batch_size / num_generations prompts."""
    temperature: float = 1.0
    """Sampling temperature of the completions; the loss takes their log-probabilities at it
    too (the distribution they were sampled from, as TRL does; ``top_p`` is not corrected for)."""
    top_p: float = 1.0
    """Nucleus sampling mass of the completions."""
    max_completion_length: int | None = None
    """Cap on a completion's tokens; null: the run's answer budget (generate.max_new_tokens)."""
    mask_truncated_completions: bool = True
    """Completions the cap cut off carry no reward and are left out of the loss."""
    reward: str = "verifier"
    """verifier: 1 for the right value (the task's check by value, as evaluation uses), else 0;
    random: a fair coin per completion (the control that tells learning from noise);
    module:function: a function of yours, called with prompt, completion, reference and
    answer (keywords), returning a float (named here, never by a data file)."""
    step_credit: bool = False
    """Worked answers: the advantage of a wrong completion lands on its first wrong step
    (the step verifier's, against the reference): the steps before it earn a right answer's
    credit, the wrong step's tokens a penalty as large as that credit or a wrong answer's,
    whichever is larger, the tokens after it none. So a group of wrong answers, which has
    no signal by outcome, still teaches its right steps and its first wrong one."""
    scale_rewards: bool = False
    """Divide each group's advantages by its reward spread (GRPO); false: Dr. GRPO's
    unscaled advantages (no weight on groups that are nearly all right or all wrong)."""
    loss_type: Literal["dapo", "grpo", "dr_grpo"] = "dapo"
    """dapo: token losses summed over the step and divided by its completion tokens (every
    token weighs the same); grpo: each completion's mean, then the mean over completions;
    dr_grpo: the sum divided by completions x max_completion_length."""
    beta: float = 0.0
    """Weight of the KL term to the starting policy (the init_from adapter, frozen); 0: no
    reference pass."""
    epsilon: float = 0.2
    """Clipping of the probability ratio to the policy that sampled (matters when
    num_iterations > 1)."""
    num_iterations: int = 1
    """Updates on each batch of completions (μ in the GRPO paper): one step samples once
    and takes this many optimizer updates."""
    category_weights: Literal["uniform", "errors", "spread"] = "uniform"
    """Which problems a step asks (each category weighed by its recent reward p among the
    sampled completions, plus a floor of 0.1): uniform as the stream draws them; errors: in
    proportion to 1 - p (what the model gets wrong); spread: to 4 p (1 - p), most where the
    model is right half the time, so that a group's answers differ and carry signal (online
    difficulty filtering by category)."""
    rft_all_steps: bool = True
    """Rejection sampling (objective rft): for worked answers keep only completions whose
    every step is right, not only the final value."""

    def problems(self) -> list[str]:
        p: list[str] = []
        if self.num_generations < 1:
            p.append(f"rl.num_generations: must be at least 1, got {self.num_generations}")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            p.append(f"rl: temperature must be > 0 and top_p within (0, 1], got {self.temperature} and {self.top_p}")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            p.append(f"rl.max_completion_length: must be at least 1 (or null), got {self.max_completion_length}")
        if self.reward not in REWARDS and not _FUNCTION.match(self.reward):
            p.append(f"rl.reward: {self.reward!r} is neither {' nor '.join(REWARDS)} nor module:function "
                     "(e.g. my_rewards:score, importable from the current folder)")
        if self.beta < 0 or self.epsilon <= 0 or self.num_iterations < 1:
            p.append(f"rl: beta >= 0, epsilon > 0 and num_iterations >= 1, got {self.beta}, {self.epsilon}, {self.num_iterations}")
        return p
