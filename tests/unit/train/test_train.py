"""tasktune.train: what a step changes, the loss against HF's, accumulation, the schedule."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import islice

import pytest
import torch
from conftest import template_for

from tasktune.adapters import get_adapter
from tasktune.config import AdapterConfig, DataConfig, EncodingConfig, TrainConfig
from tasktune.constants import IGNORE_INDEX
from tasktune.data import build_datasets
from tasktune.encoding import ChatEncoder, pad_right
from tasktune.model import load_model, resolve_model
from tasktune.train import LoopState, NonFiniteLoss, count_supervised, lr_at, make_accelerator, supervised_loss_sum, train_steps
from tasktune.train.loss import MIN_SHARED_PREFIX, shared_prefix_length

TRAIN_ARCHS = ["llama", "glm", "glm4"]
# Constant lr, no warm-up: every step moves the weights by the same rule.
STEP_CFG = TrainConfig(max_steps=2, batch_size=4, lr=1e-2, warmup_steps=0, schedule="constant")


def _lora_model(folder, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Fresh base weights with LoRA; the LoRA init is seeded so two calls are identical."""
    base = load_model(resolve_model(str(folder)), dtype)
    torch.manual_seed(seed)
    return get_adapter("lora").apply(base, AdapterConfig())


def _stream():
    """The same endless stream of arithmetic examples on every call."""
    return build_datasets(DataConfig(), n_eval=10, eval_seed=0, seed=0).train


def _train(model, tokenizer, arch, cfg: TrainConfig):
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    steps = train_steps(model, make_accelerator(cfg, 0), encoder, _stream(), cfg, EncodingConfig(), LoopState())
    return encoder, steps


def _batch(tokenizer, arch, n: int = 4) -> dict[str, torch.Tensor]:
    encoder = ChatEncoder(tokenizer, template=template_for(arch))
    encoded = [encoder.encode(ex, 512) for ex in islice(_stream(), n)]
    return pad_right([e.input_ids for e in encoded], [e.labels for e in encoded], tokenizer.pad_token_id)


@pytest.mark.parametrize("arch", TRAIN_ARCHS)
def test_step_changes_trainable_weights_and_leaves_frozen_ones_bit_identical(arch, tiny_model_dirs, tokenizer):
    model = _lora_model(tiny_model_dirs[arch])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert any(".lora_A." in n for n in trainable) and any(".lora_B." in n for n in trainable)

    _, steps = _train(model, tokenizer, arch, STEP_CFG)
    first = next(steps)
    assert (first.step, first.examples, first.lr) == (1, 4, 1e-2)
    assert math.isfinite(first.loss) and first.loss > 0 and first.supervised_tokens > 0
    now = dict(model.named_parameters())
    # LoRA starts with B = 0, so A's gradient is 0 on the first step and Adam leaves it
    # exactly as it was; B moves.
    for name in trainable:
        changed = not torch.equal(now[name], before[name])
        assert changed == (".lora_B." in name), name

    rest = list(steps)
    assert [s.step for s in rest] == [2]
    now = dict(model.named_parameters())
    for name, old in before.items():
        if name in trainable:
            assert not torch.equal(now[name], old), f"{name} did not train"
        else:
            assert torch.equal(now[name], old), f"frozen {name} changed"
    assert not model.training  # the loop leaves the model in eval mode


@pytest.mark.parametrize("arch", TRAIN_ARCHS)
def test_supervised_loss_equals_the_models_own_loss(arch, tiny_model_dirs, tokenizer):
    batch = _batch(tokenizer, arch)
    assert batch["attention_mask"].min() == 0  # rows of different lengths: padding present
    n = count_supervised(batch["labels"])
    assert n == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) > 0
    model = _lora_model(tiny_model_dirs[arch])
    with torch.no_grad():  # make the adapter non-trivial (B starts at zero)
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.1)
    base = model.get_base_model()

    class NoLogitsToKeep(torch.nn.Module):  # the fallback path: full logits, then a mask
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    calls = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    with torch.no_grad():
        reference = model(**batch).loss  # HF: shifts the labels itself, mean over supervised tokens
        ours = supervised_loss_sum(model, batch) / n
    rows, length = batch["input_ids"].shape
    assert calls[-1] == (rows, length - 1)  # the last column feeds no loss and is not run
    with torch.no_grad():
        fallback = supervised_loss_sum(NoLogitsToKeep(model), batch) / n
        with model.disable_adapter():
            plain_ref = base(**batch).loss
            plain = supervised_loss_sum(base, batch) / n
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, reference, atol=1e-5, rtol=0)
    assert torch.allclose(fallback, reference, atol=1e-5, rtol=0)
    assert torch.allclose(plain, plain_ref, atol=1e-5, rtol=0)
    assert not torch.allclose(plain, ours, atol=1e-3)  # the adapter is in the loss


@pytest.mark.parametrize("arch", ["llama", "qwen2", "glm", "glm4"])
@pytest.mark.parametrize("system", ["", "You are a careful calculator. Answer with the number only."])
def test_shared_prefix_gives_the_same_loss_and_gradients(arch, system, tiny_model_dirs, tokenizer):
    encoder = ChatEncoder(tokenizer, template=template_for(arch), system_prompt=system)
    encoded = [encoder.encode(ex, 512) for ex in islice(_stream(), 5)]
    batch = pad_right([e.input_ids for e in encoded], [e.labels for e in encoded], tokenizer.pad_token_id)
    assert batch["attention_mask"].min() == 0  # rows of different lengths
    keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
    keep[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    shared = shared_prefix_length(batch, keep)
    common = 0  # the longest common prefix of the token rows, computed the slow way
    while all(e.input_ids[common] == encoded[0].input_ids[common] for e in encoded):
        common += 1
    assert shared == common < keep.nonzero()[:, 1].min() + 1
    assert shared >= (MIN_SHARED_PREFIX + 8 if system else MIN_SHARED_PREFIX)  # the system prompt is shared too

    def loss_and_grads(share: bool):
        model = _lora_model(tiny_model_dirs[arch])
        with torch.no_grad():  # a non-trivial adapter, so A gets gradients too
            for name, p in model.named_parameters():
                if ".lora_B." in name:
                    p.normal_(0.0, 0.1)
        calls = []
        model.get_input_embeddings().register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
        loss = supervised_loss_sum(model, batch, share_prefix=share)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        return loss, grads, calls

    plain, plain_grads, plain_calls = loss_and_grads(False)
    ours, grads, calls = loss_and_grads(True)
    rows, length = batch["input_ids"].shape
    length -= 1  # the longest row's closing token predicts nothing: not run
    assert plain_calls == [(rows, length)]
    assert calls == [(1, shared), (rows, length - shared)]  # the prefix really ran once
    assert torch.allclose(ours, plain, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == grads.keys()
    for name, g in plain_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), name


def test_a_short_shared_prefix_takes_the_plain_path(tiny_model_dirs, tokenizer):
    encoder = ChatEncoder(tokenizer, template="chatml", system_prompt=None)  # no system turn: 3 shared tokens
    encoded = [encoder.encode(ex, 512) for ex in islice(_stream(), 4)]
    batch = pad_right([e.input_ids for e in encoded], [e.labels for e in encoded], tokenizer.pad_token_id)
    model = _lora_model(tiny_model_dirs["llama"])
    calls = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    with torch.no_grad():
        supervised_loss_sum(model, batch, share_prefix=True)
    assert 0 < shared_prefix_length(batch, torch.zeros_like(batch["labels"], dtype=torch.bool)) < MIN_SHARED_PREFIX
    rows, length = batch["input_ids"].shape
    assert calls == [(rows, length - 1)]


@pytest.mark.parametrize("arch", TRAIN_ARCHS)
def test_gradient_accumulation_4x1_equals_batch_4(arch, tiny_model_dirs, tokenizer):
    # float64: Adam divides by sqrt(v) + 1e-8, so on its first steps a gradient element
    # near zero moves its weight by up to lr * g / 1e-8; float32 rounding noise in such
    # elements (different matmul shapes for 4 rows vs 1) then shows up as ~5e-4 weight
    # differences. In float64 the two runs agree to ~1e-13, so atol 1e-5 tests the
    # accumulation rule, not rounding. (The cross-entropy itself still runs in float32.)
    def run(grad_accum: int):
        model = _lora_model(tiny_model_dirs[arch], seed=0, dtype=torch.float64)
        _, steps = _train(model, tokenizer, arch, replace(STEP_CFG, grad_accum=grad_accum))
        infos = list(steps)
        return infos, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    infos_1, weights_1 = run(1)
    infos_4, weights_4 = run(4)
    assert weights_1.keys() == weights_4.keys()
    for name in weights_1:
        assert torch.allclose(weights_1[name], weights_4[name], atol=1e-5, rtol=0), name
    for a, b in zip(infos_1, infos_4, strict=True):
        assert a.loss == pytest.approx(b.loss, abs=1e-5)
        assert a.supervised_tokens == b.supervised_tokens
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)
        assert a.examples == b.examples


def test_no_trainable_parameters_is_an_error(tiny_model_dirs, tokenizer):
    model = load_model(resolve_model(str(tiny_model_dirs["llama"])), torch.float32)
    model.requires_grad_(False)
    _, steps = _train(model, tokenizer, "llama", STEP_CFG)
    with pytest.raises(ValueError, match="no trainable parameters"):
        next(steps)


def _cosine_ref(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    p = (step - cfg.warmup_steps) / (cfg.max_steps - 1 - cfg.warmup_steps)
    return floor + (cfg.lr - floor) * (1 + math.cos(math.pi * p)) / 2


def test_lr_schedule_warmup_then_cosine_to_the_floor():
    cfg = TrainConfig(max_steps=101, lr=2e-3, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps)]
    assert lrs[:10] == pytest.approx([2e-3 * (s + 1) / 10 for s in range(10)])  # linear warm-up
    assert lrs[9] == lrs[10] == pytest.approx(2e-3)  # peak at the end of warm-up
    assert lrs[55] == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert lrs[-1] == pytest.approx(2e-3 * 0.1)  # the last step is at lr * min_lr_ratio
    assert lrs == pytest.approx([_cosine_ref(s, cfg) for s in range(cfg.max_steps)])
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_lr_schedule_linear_and_constant():
    lin = TrainConfig(max_steps=11, lr=1.0, warmup_steps=0, min_lr_ratio=0.2, schedule="linear")
    assert [lr_at(s, lin) for s in range(11)] == pytest.approx([1.0 - 0.08 * s for s in range(11)])
    const = TrainConfig(max_steps=50, lr=1.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, const) for s in range(50)] == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 47)
    one = TrainConfig(max_steps=1, lr=1.0, warmup_steps=0)
    assert lr_at(0, one) == 1.0  # a single step trains at the peak


def test_max_minutes_shortens_the_schedule_only_when_the_steps_do_not_fit(tiny_model_dirs, tokenizer):
    from tasktune.train.schedule import steps_that_fit

    cfg = TrainConfig(max_steps=1000, lr=1e-3, warmup_steps=2, min_lr_ratio=0.1, max_minutes=1.0)
    # 10 steps in 5 s (0.5 s each after the first): 990 more need 495 s, 55 s are left.
    assert steps_that_fit(10, 5.0, 4.5, 9, cfg, 1000) == 10 + 110
    assert steps_that_fit(10, 5.0, 0.45, 9, cfg, 1000) == 1000  # fast enough: unchanged
    assert steps_that_fit(10, 5.0, 4.5, 9, replace(cfg, max_minutes=None), 1000) == 1000
    # Projected a little short (under 5%): the schedule is kept, the deadline may take its
    # last steps; a little more than that, and the run is rescheduled.
    # (55 s left after 10 of 120 steps.)
    assert steps_that_fit(10, 5.0, 9 * 55 / 107.5, 9, cfg, 120) == 120  # 117 of 120 fit
    assert steps_that_fit(10, 5.0, 9 * 55 / 103.5, 9, cfg, 120) == 113  # 113 of 120 fit
    # The schedule is a function of the step and the run's step count, never of the clock.
    assert lr_at(119, cfg, 120) == pytest.approx(1e-4)  # a shortened run still ends at the floor
    assert lr_at(10, cfg) == lr_at(10, cfg, 1000)
    # A budget of ~0 seconds: the loop stops after its first step.
    model = _lora_model(tiny_model_dirs["llama"])
    _, steps = _train(model, tokenizer, "llama", replace(STEP_CFG, max_steps=50, max_minutes=1e-9))
    assert [info.step for info in steps] == [1]
    # A budget that holds ~15 steps of 50: shortened at a 10% check, decay to the floor.
    model = _lora_model(tiny_model_dirs["llama"])
    infos = []
    for info in train_steps(model, make_accelerator(STEP_CFG, 0), ChatEncoder(tokenizer, template="chatml"),
                            _stream(), replace(STEP_CFG, max_steps=50, max_minutes=None), EncodingConfig(), LoopState()):
        infos.append(info)
        if info.step == 10:
            break
    pace = infos[-1].seconds / 10
    budget = replace(STEP_CFG, max_steps=50, max_minutes=15 * pace / 60, warmup_steps=2, min_lr_ratio=0.0, schedule="linear")
    model = _lora_model(tiny_model_dirs["llama"])
    run = list(train_steps(model, make_accelerator(budget, 0), ChatEncoder(tokenizer, template="chatml"), _stream(),
                           budget, EncodingConfig(), LoopState()))
    assert 10 < len(run) < 50
    assert run[-1].lr == pytest.approx(0.0, abs=budget.lr / 10)  # the decay reached its end, not cut off

def test_the_reschedule_message_says_when_the_steps_fit_again():
    from tasktune.train.loop import reschedule_message

    cfg = TrainConfig(max_steps=170, max_minutes=6.0)
    assert "147 of 170 steps fit; the schedule now ends there" in reschedule_message(147, cfg)
    assert "all 170 steps fit again; the schedule ends on train.max_steps" in reschedule_message(170, cfg)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_16_bit_base_trains_float32_weights(method, tiny_model_dirs, tokenizer):
    """bf16 base weights: what trains is kept in float32 (updates far below a bf16 weight's
    last digit would vanish), the frozen base stays bf16, and the loss is finite."""
    base = load_model(resolve_model(str(tiny_model_dirs["llama"])), torch.bfloat16)
    torch.manual_seed(0)
    model = get_adapter(method).apply(base, AdapterConfig())
    infos = list(_train(model, tokenizer, "llama", STEP_CFG)[1])
    assert all(math.isfinite(i.loss) for i in infos)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == ({torch.bfloat16} if method == "lora" else set())


def test_a_nan_loss_stops_before_the_step_is_applied(tiny_model_dirs, tokenizer):
    model = _lora_model(tiny_model_dirs["llama"])
    _, steps = _train(model, tokenizer, "llama", replace(STEP_CFG, max_steps=5))
    next(steps)
    lora_a = next(p for n, p in model.named_parameters() if ".lora_A." in n)
    with torch.no_grad():
        lora_a[0, 0] = float("nan")
    others = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad and ".lora_A." not in n}
    with pytest.raises(NonFiniteLoss, match="at step 2; that step was not applied") as err:
        next(steps)
    assert err.value.step == 2
    assert all(torch.equal(p, others[n]) for n, p in model.named_parameters() if n in others)


def test_deepspeed_is_refused_with_the_fsdp_way_named(monkeypatch):
    # What `accelerate launch` sets for a DeepSpeed config; tasktune has no DeepSpeed path.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="DeepSpeed is not supported.*configs/accelerate/fsdp.yaml"):
        make_accelerator(TrainConfig(), 0)


def test_length_sorted_micro_batches_compute_less_padding_for_the_same_step(tiny_model_dirs, tokenizer):
    """With grad_accum > 1 each step's rows are sorted by length before they are cut into
    micro-batches: each is padded only to its own longest row, the summed loss and the
    gradients are those of the whole batch."""
    cfg = replace(STEP_CFG, batch_size=8, max_steps=1)

    def run(grad_accum: int):
        model = _lora_model(tiny_model_dirs["llama"], seed=0, dtype=torch.float64)
        _, steps = _train(model, tokenizer, "llama", replace(cfg, grad_accum=grad_accum))
        infos = list(steps)
        return infos, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    infos_1, weights_1 = run(1)
    infos_2, weights_2 = run(2)
    for name in weights_1:
        assert torch.allclose(weights_1[name], weights_2[name], atol=1e-5, rtol=0), name
    assert infos_2[0].loss == pytest.approx(infos_1[0].loss, abs=1e-6)

    def padding(lengths: list[int]) -> int:  # the loss computes columns up to the longest row's last-but-one
        width = max(lengths) - 1
        return sum(width - min(n, width) for n in lengths)

    encoder = ChatEncoder(tokenizer, template=template_for("llama"))
    lengths = [len(encoder.encode(ex, 512).input_ids) for ex in islice(_stream(), 8)]
    ordered = sorted(lengths)
    in_order = padding(lengths[:4]) + padding(lengths[4:])
    assert padding(ordered[:4]) + padding(ordered[4:]) < in_order  # the rows give sorting something to do
    assert infos_1[0].padding_tokens == padding(lengths)
    assert infos_2[0].padding_tokens == padding(ordered[:4]) + padding(ordered[4:])
