"""tasktune.train.rl: group-relative advantages, step credit, rejection sampling, the
clipped loss and its KL term, the weighted draw, and a loop that learns from a reward."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tasktune.adapters import get_adapter
from tasktune.config import AdapterConfig, DataConfig, RLConfig, TrainConfig
from tasktune.data import build_datasets
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_right
from tasktune.eval import wrong_step_span
from tasktune.model import load_model, resolve_model
from tasktune.recipes.rollouts import token_span
from tasktune.train import LoopState, make_accelerator
from tasktune.train.loss import token_logprobs
from tasktune.train.policy import Rollout, policy_loss, token_advantages, token_weights as _weights
from tasktune.train.rl import Reference, Source, _Draw, _figures, rl_steps

RL = RLConfig(num_generations=4)


def _group(rewards, lengths=None, **kw) -> list[Rollout]:
    lengths = lengths or [6] * len(rewards)
    return [Rollout([1, 2], list(range(10, 10 + n)), r, **kw) for r, n in zip(rewards, lengths)]


def test_advantages_are_the_reward_minus_the_group_mean_unscaled_by_default():
    advs = token_advantages(_group([1, 0, 0, 0]) + _group([1, 1, 0, 0]), RL, "grpo")
    assert [round(float(a[0]), 4) for a in advs] == [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
    assert all(bool((a == a[0]).all()) for a in advs)  # every token of a completion alike
    scaled = token_advantages(_group([1, 0, 0, 0]), replace(RL, scale_rewards=True), "grpo")
    std = torch.tensor([1.0, 0, 0, 0]).std().item()
    assert float(scaled[0][0]) == pytest.approx(0.75 / (std + 1e-4))
    flat = token_advantages(_group([1, 1, 1, 1]), RL, "grpo")  # a group without spread: no signal
    assert all(not a.any() for a in flat)


def test_truncated_completions_are_left_out_of_the_baseline_and_the_loss():
    group = _group([1, 0, 0, 0])
    group[3].truncated = True
    advs = token_advantages(group, RL, "grpo")
    assert advs[3] is None
    assert float(advs[0][0]) == pytest.approx(1 - 1 / 3)
    kept = token_advantages(group, replace(RL, mask_truncated_completions=False), "grpo")
    assert kept[3] is not None and float(kept[0][0]) == pytest.approx(0.75)


def test_a_group_counts_as_without_spread_among_its_scored_answers():
    group = _group([1, 1, 1, 0])
    group[3].truncated = True  # cut off at the cap: no reward, left out of the loss
    advs = token_advantages(group, RL, "grpo")
    assert _figures(group, advs, RL, "grpo", None)["no_spread"] == 1.0 and _figures(group, advs, RL, "grpo", None)["trained"] == 0
    kept = replace(RL, mask_truncated_completions=False)
    assert _figures(group, token_advantages(group, kept, "grpo"), kept, "grpo", None)["no_spread"] == 0.0


def test_step_credit_puts_the_penalty_on_the_wrong_steps_tokens_and_credits_the_steps_before():
    group = _group([1, 0, 0, 0], lengths=[8, 8, 8, 8])
    group[1].wrong_span = (3, 5)
    plain = token_advantages(group, RL, "grpo")[1]
    credited = token_advantages(group, replace(RL, step_credit=True), "grpo")[1]
    assert plain.tolist() == [-0.25] * 8  # outcome only: every token of the wrong answer alike
    assert credited[:3].tolist() == [0.75] * 3  # the right steps before it: a right answer's credit
    assert credited[3:5].tolist() == [-0.75] * 2  # the wrong step: as far down as the credit goes up
    assert credited[5:].tolist() == [0.0] * 3  # after it: nothing
    # In the loss: the gradient on each token's log-probability is -advantage x weight, so
    # only the wrong step's tokens are pushed down and the tokens after it not at all.
    logp = torch.zeros(8, requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), credited, 0.2)
    loss.sum().backward()
    assert (logp.grad[3:5] > 0).all() and (logp.grad[:3] < 0).all() and (logp.grad[5:] == 0).all()


def test_step_credit_lands_on_the_tokens_that_write_the_wrong_step(tokenizer):
    """From a worked answer's text to its tokens: the step verifier's first wrong step (a
    carry not added) and the completion tokens that wrote it."""
    reference = "6+9=15,9+9+1=19,1+5+1=7 #### 795"
    text = "6+9=15,9+9=18,1+5+1=7 #### 785"
    ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    chars = wrong_step_span(text, reference, False)
    start, end = token_span(tokenizer, ids, chars, text)
    assert tokenizer.decode(ids[start:end]) == ",9+9=18"
    assert tokenizer.decode(ids[:start]) == "6+9=15"
    right = "6+9=15,9+9+1=19,1+5+1=7 #### 795"
    assert wrong_step_span(right, reference, True) is None
    # Stopped where a step was due (nothing written there): the penalty is on the stop token.
    short = "6+9=15,9+9+1=19"
    ids = tokenizer(short, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert token_span(tokenizer, ids, wrong_step_span(short, reference, False), short) == (len(ids) - 1, len(ids))
    # A leading blank is not part of the first step.
    blank = tokenizer("\n" + text, add_special_tokens=False).input_ids
    first, _ = token_span(tokenizer, blank, wrong_step_span(text, reference, False), text)
    assert tokenizer.decode(blank[first:]).startswith(",9+9=18")


def test_step_credit_leaves_right_answers_whole_and_groups_without_spread_unscaled():
    group = _group([1, 1, 0, 0], lengths=[8, 8, 8, 8])
    group[0].wrong_span = (2, 4)  # the right value with a step unlike the reference's
    advs = token_advantages(group, replace(RL, step_credit=True), "grpo")
    assert advs[0].tolist() == [0.5] * 8
    mostly = _group([1, 1, 1, 0], lengths=[8, 8, 8, 8])
    mostly[3].wrong_span = (2, 4)
    assert token_advantages(mostly, replace(RL, step_credit=True), "grpo")[3].tolist()[:4] == [0.25, 0.25, -0.75, -0.75]
    flat = _group([0, 0, 0, 0], lengths=[8, 8, 8, 8])
    flat[0].wrong_span = (2, 4)
    scaled = token_advantages(flat, replace(RL, step_credit=True, scale_rewards=True), "grpo")
    # Not divided by a zero spread; all wrong (mean 0): the right steps credited, the wrong one penalised.
    assert scaled[0].tolist() == [1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0]
    assert token_advantages(flat, RL, "grpo")[0].tolist() == [0.0] * 8  # without step credit: no signal


def test_rejection_sampling_keeps_each_distinct_verified_completion_once():
    group = _group([1, 1, 0, 1], lengths=[5, 5, 5, 6])  # the first two are the same tokens
    group[3].wrong_span = (1, 2)  # the right value with a wrong step
    kept = token_advantages(group, RL, "rft")
    assert [a is not None for a in kept] == [True, False, False, False]
    assert kept[0].tolist() == [1.0] * 5
    loose = token_advantages(group, replace(RL, rft_all_steps=False), "rft")
    assert [a is not None for a in loose] == [True, False, False, True]


def test_the_ratio_is_clipped_and_the_kl_term_is_zero_at_the_reference():
    old = torch.zeros(4)
    up = torch.full((4,), 0.5, requires_grad=True)  # ratio e^0.5 = 1.65 > 1.2
    loss, _ = policy_loss(up, old, torch.ones(4), 0.2)
    loss.sum().backward()
    assert (up.grad == 0).all()  # a positive advantage past 1 + epsilon: no further push
    down = torch.full((4,), -0.5, requires_grad=True)
    loss, _ = policy_loss(down, old, -torch.ones(4), 0.2)
    loss.sum().backward()
    assert (down.grad == 0).all()
    inside = torch.full((4,), 0.1, requires_grad=True)
    loss, _ = policy_loss(inside, old, torch.ones(4), 0.2)
    loss.sum().backward()
    assert (inside.grad < 0).all()
    same = torch.zeros(4)
    _, kl = policy_loss(same, same, torch.ones(4), 0.2, ref=same, beta=0.1)
    assert (kl == 0).all()
    _, kl = policy_loss(same, same, torch.ones(4), 0.2, ref=torch.full((4,), -1.0), beta=0.1)
    assert (kl > 0).all()


def test_loss_types_weigh_tokens_as_their_papers_say():
    group = _group([1, 0, 0, 0], lengths=[2, 4, 6, 8])
    advs = token_advantages(group, RL, "grpo")
    assert _weights(group, advs, RL, 10) == [1 / 20] * 4  # dapo: every token of the step alike
    assert _weights(group, advs, replace(RL, loss_type="grpo"), 10) == [1 / 8, 1 / 16, 1 / 24, 1 / 32]
    assert _weights(group, advs, replace(RL, loss_type="dr_grpo"), 10) == [1 / 40] * 4


def test_reference_swaps_the_starting_weights_in_and_back(tiny_model_dirs):
    model = get_adapter("lora").apply(load_model(resolve_model(str(tiny_model_dirs["llama"])), torch.float32), AdapterConfig())
    reference = Reference(model)
    name, p = next((n, p) for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        p.add_(1.0)
    moved = p.detach().clone()
    with reference.swapped(model):
        assert torch.equal(p, reference.saved[name])
    assert torch.equal(p, moved)


def test_the_weighted_draw_asks_the_categories_the_model_gets_wrong_more_often():
    stream = iter([Example(str(i), "x", category="easy" if i % 2 else "hard") for i in range(4000)])
    state = LoopState(rewards={"easy": 1.0, "hard": 0.0})
    drawn = _Draw(stream, state, replace(RL, category_weights="errors"), seed=0)(400)
    hard = sum(e.category == "hard" for e in drawn)
    assert hard > 0.85 * len(drawn)  # easy ones kept at the floor's 10%: about 91% hard
    assert state.drawn > 400  # skipped problems count as drawn (a resumed run skips them too)
    state = LoopState(rewards={"easy": 1.0, "hard": 0.5})
    stream = iter([Example(str(i), "x", category="easy" if i % 2 else "hard") for i in range(4000)])
    halves = _Draw(stream, state, replace(RL, category_weights="spread"), seed=0)(400)
    assert sum(e.category == "hard" for e in halves) > 0.85 * 400  # right half the time: the most signal
    plain = _Draw(iter([Example(str(i), "x", category="easy" if i % 2 else "hard") for i in range(400)]), LoopState(), RL, 0)(100)
    assert sum(e.category == "hard" for e in plain) == 50


def _two_answers(tiny_model_dirs, tokenizer):
    """The tiny Llama with LoRA; a rollout that asks ``3+9=`` in place of every problem
    and answers "12" (rewarded) and "21"; and the log-probability of each answer (summed
    over its tokens, the stop token included) and their length."""
    model = get_adapter("lora").apply(load_model(resolve_model(str(tiny_model_dirs["llama"])), torch.float32), AdapterConfig())
    encoder = ChatEncoder(tokenizer)
    good, bad = tokenizer("12", add_special_tokens=False).input_ids, tokenizer("21", add_special_tokens=False).input_ids
    stop = [encoder.stop_id]

    e = Example("3+9=", "12")

    def rollout(examples, step):
        return [Rollout(encoder.prompt_ids(e), c + stop, float(c == good)) for _ in examples for c in (good, bad)]

    def logprobs(temperature: float = 1.0) -> tuple[float, float, int]:
        rows = [encoder.prompt_ids(e) + c + stop for c in (good, bad)]
        labels = [[-100] * len(encoder.prompt_ids(e)) + c + stop for c in (good, bad)]
        with torch.no_grad():
            logp = token_logprobs(model, pad_right(rows, labels, 0), temperature=temperature).split(len(good) + 1)
        return float(logp[0].sum()), float(logp[1].sum()), len(good) + 1

    return model, rollout, logprobs


def _run(model, rollout, objective: str, reference: Reference | None = None, **rl) -> list:
    cfg = TrainConfig(objective=objective, max_steps=6, batch_size=4, lr=1e-2, warmup_steps=0, schedule="constant")
    stream = build_datasets(DataConfig(), n_eval=2, eval_seed=0, seed=0).train
    return list(rl_steps(model, make_accelerator(cfg, 0), Source(stream, rollout), cfg, RLConfig(num_generations=2, **rl), LoopState(),
                         reference=reference))


def test_the_loop_raises_the_probability_of_the_rewarded_completion(tiny_model_dirs, tokenizer):
    """Two fixed completions per prompt, the first rewarded: a few GRPO steps make it more
    likely than the other, which starts as likely."""
    model, rollout, logprobs = _two_answers(tiny_model_dirs, tokenizer)
    good, bad, _ = logprobs()
    infos = _run(model, rollout, "grpo")
    assert [i.step for i in infos] == list(range(1, 7))
    assert infos[-1].figures["reward_mean"] == 0.5 and infos[-1].figures["no_spread"] == 0.0
    after_good, after_bad, _ = logprobs()
    assert after_good - after_bad > good - bad + 1.0


def test_rejection_sampling_trains_the_kept_answer_and_logs_its_likelihood_loss(tiny_model_dirs, tokenizer):
    """RFT keeps the rewarded answer (once in each group) and trains on it
    as an SFT row: its logged loss is that answer's negative log-likelihood per token, which
    falls, not the surrogate's constant -1; taken at the sampling temperature, as the
    policy loss's log-probabilities are (the distribution the answers came from)."""
    model, rollout, logprobs = _two_answers(tiny_model_dirs, tokenizer)
    good, _, tokens = logprobs(temperature=0.5)
    assert abs(good - logprobs()[0]) > 0.1  # the temperature changes the figure
    infos = _run(model, rollout, "rft", temperature=0.5)
    assert [i.figures["kept"] for i in infos] == [2] * 6  # each group's "12", kept once in each
    assert infos[0].loss == pytest.approx(-good / tokens, rel=1e-3)  # the step's mean over the kept tokens
    assert infos[-1].loss < infos[0].loss - 0.2  # it falls (the grpo surrogate logged -1.0 every step)
    assert logprobs(temperature=0.5)[0] > good + 1.0


def test_the_kl_term_runs_in_the_loop_from_zero_at_the_start(tiny_model_dirs, tokenizer):
    """rl.beta > 0: the reference pass runs (at the sampling temperature) and the logged KL
    starts at 0, the policy being the reference, then grows as the policy moves."""
    model, rollout, _ = _two_answers(tiny_model_dirs, tokenizer)
    infos = _run(model, rollout, "grpo", reference=Reference(model), beta=0.1, temperature=0.7)
    assert infos[0].figures["kl"] == 0.0
    assert infos[-1].figures["kl"] > 0.0
