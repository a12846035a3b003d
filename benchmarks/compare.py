"""tasktune against Hugging Face Trainer + PEFT, side by side, in one invocation.

Every measurement runs in its own process (so peak RSS is that side's own), on the
bundled SmolLM2-135M, with the same LoRA (SETTINGS: r=16, alpha 32, all linear layers, no
dropout), learning rate, batch of 16, fp32 and thread count. The runs alternate
(tasktune, baseline, baseline, tasktune, ...) and each figure is the mean of its runs,
so a drift of the machine's speed falls on both sides alike.

Sides:
  tasktune      `train_steps` with the demo's rendering (ChatML, no system turn).
  hf            Trainer + PEFT as their docs show: the tokenizer's own chat template
                (SmolLM2's injects its default system prompt), prompt tokens masked
                with -100, DataCollatorForSeq2Seq, TrainingArguments defaults.
  hf_same       Trainer + PEFT fed tasktune's exact rows (same ids, labels, order):
                isolates the training engine from the prompt format.

Generation: greedy, batches of 32 left-padded prompts, the same 64 prompt token lists
and the same max_new_tokens on both sides, base model; tasktune's generate_completions
against a plain `model.generate` loop. New tokens are counted up to the stop token.

Time to 95% exact match on the demo task (integer + and - with operands 0 to 99, the
demo's 300 held-out problems), each tool at its best settings: both sides train the
demo's recipe as configs/arith_lora.yaml sets it (its answer format, LoRA, learning rate,
warm-up, linear decay to zero over its train.max_steps at its batch size, the same stream
of training problems) and are evaluated every ``--target-every`` steps on the same
held-out problems, checked by value with the same verifier; a side stops at the first
evaluation that reaches the target. tasktune runs as `tasktune train
configs/arith_lora.yaml` does; the baseline is Trainer + PEFT with the tokenizer's own
chat template, and generates with `model.generate` (batches of 32). Neither side has a
time cap, so each trains the same schedule. Time counts training only (evaluation
excluded on both sides); a side that never reaches the target within the schedule makes
the ratio a bound. Time to 80% comes from the same evaluations.

Usage:
    python benchmarks/compare.py [--steps 8 --warmup 2 --rounds 2 --target-every N --no-target]
Writes benchmarks/results/latest.json and prints the ratio table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "arith_lora.yaml"
# The throughput runs' settings, one definition for both sides: tasktune gets them as
# config overrides, Trainer + PEFT as TrainingArguments and a LoraConfig built from the
# same config, and latest.json records this dict.
SETTINGS = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lr": 1e-3, "batch": 16}
OVERRIDES = [f"adapter.lora.r={SETTINGS['lora_r']}", f"adapter.lora.alpha={SETTINGS['lora_alpha']}",
             f"adapter.lora.dropout={SETTINGS['lora_dropout']}", f"train.lr={SETTINGS['lr']}",
             f"train.batch_size={SETTINGS['batch']}", "train.warmup_steps=0", "train.schedule=constant",
             "train.max_minutes=null"]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(overrides: list[str] = OVERRIDES):
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.recipes.common import load_base

    cfg = load_config(CONFIG, overrides)
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    return cfg, data, load_base(cfg)


def _lora(model, lora):
    """PEFT's LoRA as ``lora`` (a config's ``adapter.lora``) sets it, on all linear layers."""
    import peft

    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    return peft.get_peft_model(model, config)


def _plain(model):
    """Trainer refuses a model loaded from GGUF (it counts as quantized, though its
    tensors are de-quantized to fp32); a Hugging Face user would convert it to a plain
    folder first. Dropping the GGUF marker is the same model without the round trip."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.__dict__.pop("quantization_config", None)
    return model


def _hf_prompt_ids(tok, text: str) -> list[int]:
    """A prompt rendered by the tokenizer's own chat template, ready for the answer."""
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    return tok(prompt, add_special_tokens=False).input_ids


def _hf_generate(model, prompts: list[list[int]], pad: int, stop: int, max_new_tokens: int) -> list[list[int]]:
    """The new tokens of plain `model.generate`, greedy, in left-padded batches of 32."""
    import torch

    from tasktune.encoding import pad_left

    new = []
    with torch.inference_mode():
        for i in range(0, len(prompts), 32):
            batch = pad_left(prompts[i : i + 32], pad)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=pad)
            new += out[:, batch["input_ids"].shape[1] :].tolist()
    return new


def _hf_features(tok, examples) -> list[dict]:
    """Training rows the way the Hugging Face docs build them: the tokenizer's own chat
    template (SmolLM2's injects its default system prompt), prompt tokens masked."""
    features = []
    for ex in examples:
        full = tok.apply_chat_template([{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.response}],
                                       tokenize=False)
        p_ids = _hf_prompt_ids(tok, ex.prompt)
        ids = tok(full, add_special_tokens=False).input_ids
        features.append({"input_ids": ids, "labels": [-100] * len(p_ids) + ids[len(p_ids) :], "attention_mask": [1] * len(ids)})
    return features


def _rows(loaded, data, n: int):
    """tasktune's encoded training rows, in order."""
    rows = []
    for example in islice(data.train, n):
        rows.append(loaded.encoder.encode(example, 512))
    return rows


def side_tasktune(steps: int, warmup: int) -> dict:
    from tasktune.adapters import get_adapter
    from tasktune.train import LoopState, make_accelerator, train_steps

    cfg, data, loaded = _setup()
    model = get_adapter("lora").apply(loaded.model, cfg.adapter)
    times, tokens, prev_tokens = [], 0, 0
    state = LoopState()
    run = train_steps(model, make_accelerator(cfg.train, cfg.seed), loaded.encoder, data.train,
                      cfg.train, cfg.encoding, state, None)
    last = 0.0
    for info in islice(run, warmup + steps):
        if info.step > warmup:
            times.append(info.seconds - last)
            tokens += info.tokens - prev_tokens
        last, prev_tokens = info.seconds, info.tokens
    run.close()
    return {"examples_per_second": cfg.train.batch_size * len(times) / sum(times),
            "tokens_per_second": tokens / sum(times), "peak_rss_mib": _peak_rss_mib(),
            "tokens_per_row": tokens / (cfg.train.batch_size * len(times)),
            "nonpad_share": 1 - info.padding_tokens / info.computed_tokens}


def _counting_collator(tok):
    """``DataCollatorForSeq2Seq`` as the docs use it, counting the positions of the
    batches it builds (``computed``) and how many are real tokens (``real``)."""
    from transformers import DataCollatorForSeq2Seq

    class Counting(DataCollatorForSeq2Seq):
        real = computed = 0

        def __call__(self, features, return_tensors=None):
            out = super().__call__(features, return_tensors)
            self.real += int(out["attention_mask"].sum())
            self.computed += out["attention_mask"].numel()
            return out

    return Counting(tok, padding=True, label_pad_token_id=-100)


def nonpad_shares(lengths: list[int], batch: int, micro_batches: int) -> dict:
    """Share of the computed positions that are real tokens, over consecutive batches of
    rows of ``lengths``: ``padded``, each step's rows sorted by length into
    ``micro_batches`` micro-batches each as wide as its longest row (tasktune's loop
    with ``train.packing=false``); ``packed``, rows end to end (``train.packing=true``:
    nothing padded); ``hf``, each batch as wide as its longest row (the collator above).

    Example:
        >>> nonpad_shares([2, 4, 2, 4], batch=4, micro_batches=2)
        {'padded': 1.0, 'packed': 1.0, 'hf': 0.75}
    """
    real = sum(lengths[: len(lengths) // batch * batch])
    padded = hf = 0
    micro = batch // micro_batches
    for i in range(0, len(lengths) - batch + 1, batch):
        rows = lengths[i : i + batch]
        hf += batch * max(rows)
        rows = sorted(rows)
        padded += sum(micro * max(rows[j : j + micro]) for j in range(0, batch, micro))
    return {"padded": real / padded, "packed": 1.0, "hf": real / hf}


def side_hf(steps: int, warmup: int, same_tokens: bool) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cfg, data, loaded = _setup()
    tok = loaded.tokenizer
    batch = cfg.train.batch_size
    n = batch * (warmup + steps)
    if same_tokens:
        features = [{"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r.input_ids)}
                    for r in _rows(loaded, data, n)]
    else:
        features = _hf_features(tok, list(islice(data.train, n)))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = _lora(_plain(loaded.model), cfg.adapter.lora)

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_begin(self, args, state, control, **kw):
            self.marks.append(("begin", time.perf_counter()))

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(("end", time.perf_counter()))

    clock = Clock()
    collator = _counting_collator(tok)
    args = TrainingArguments(output_dir="/tmp/tasktune-bench-hf", per_device_train_batch_size=batch, learning_rate=cfg.train.lr,
                             max_steps=warmup + steps, report_to=[], save_strategy="no", logging_strategy="no",
                             lr_scheduler_type="constant", disable_tqdm=True, dataloader_drop_last=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=features, callbacks=[clock], data_collator=collator)
    trainer.train()
    begins = [t for k, t in clock.marks if k == "begin"]
    ends = [t for k, t in clock.marks if k == "end"]
    times = [e - b for b, e in zip(begins, ends)][warmup:]
    # Steps follow the dataloader's (shuffled) order; non-pad tokens per step are those of
    # `batch` rows, on average the mean row length.
    per_row = statistics.mean(len(f["input_ids"]) for f in features)
    return {"examples_per_second": batch * len(times) / sum(times), "tokens_per_second": batch * per_row * len(times) / sum(times),
            "peak_rss_mib": _peak_rss_mib(), "tokens_per_row": per_row, "gradient_checkpointing": args.gradient_checkpointing,
            "nonpad_share": collator.real / collator.computed}


def side_generate(which: str, n: int = 64, max_new_tokens: int = 8) -> dict:
    from tasktune.encoding import pad_id_for
    from tasktune.generate import generate_completions

    cfg, data, loaded = _setup()
    prompts = [loaded.encoder.prompt_ids(ex) for ex in data.eval[:n]]
    stop = loaded.encoder.stop_id
    model = loaded.model
    started = time.perf_counter()
    if which == "tasktune":
        done = generate_completions(model, loaded.tokenizer, prompts, stop, max_new_tokens, batch_size=32)
        new = sum(c.tokens for c in done)
    else:
        pad = pad_id_for(loaded.tokenizer, stop)
        rows = _hf_generate(model, prompts, pad, stop, max_new_tokens)
        new = sum(row.index(stop) + 1 if stop in row else len(row) for row in rows)
    seconds = time.perf_counter() - started
    return {"new_tokens_per_second": new / seconds, "new_tokens": new, "seconds": seconds}


TARGET = 0.95
EASIER = 0.80  # also reported: both sides usually pass it, so its ratio is exact rather than a bound


def _demo_steps() -> int:
    """The demo's schedule (configs/arith_lora.yaml's train.max_steps); --target-steps for a quick look."""
    from tasktune.config import load_config

    return load_config(CONFIG).train.max_steps


def _first_at(evals: list[dict], level: float) -> dict | None:
    """The first evaluation (``{"step", "seconds", "exact_match"}``) at or above ``level``."""
    return next((e for e in evals if e["exact_match"] >= level), None)


def _target_figures(evals: list[dict]) -> dict:
    reached = {level: _first_at(evals, level) for level in (TARGET, EASIER)}
    return {"evals": evals, "seconds_to_target": reached[TARGET]["seconds"] if reached[TARGET] else None,
            "seconds_to_80": reached[EASIER]["seconds"] if reached[EASIER] else None,
            "seconds_trained": evals[-1]["seconds"], "steps_trained": evals[-1]["step"]}


def side_target_tasktune(every: int, steps: int) -> dict:
    """`tasktune train configs/arith_lora.yaml` as a user runs it, evaluating every
    ``every`` steps and stopping at the target; figures from its metrics.json."""
    out = Path("/tmp/tasktune-bench-target")
    cmd = [sys.executable, "-m", "tasktune", "train", str(CONFIG), "--overwrite", f"output_dir={out}",
           "eval.base=false", f"eval.every={every}", f"train.stop_at={TARGET}", f"train.max_steps={steps}",
           "train.max_minutes=null"]  # the baseline's schedule has no time cap either
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    evals = [{"step": e["step"], "seconds": e["seconds"], "exact_match": e["exact_match"]} for e in metrics.get("evals", [])]
    train = metrics["train"]
    if not train.get("stopped_at_target"):  # the final evaluation, after the last step
        evals.append({"step": train["steps"], "seconds": train["seconds"], "exact_match": metrics["final"]["exact_match"]})
    return _target_figures(evals)


def side_target_hf(every: int, steps: int) -> dict:
    """Trainer + PEFT on the same problems and recipe, with the tokenizer's own chat
    template; a callback evaluates every ``every`` steps (time excluded) and stops at
    the target."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from tasktune.eval import is_correct
    from tasktune.recipes.common import max_new_tokens_for

    cfg, data, loaded = _setup([])  # the demo's own recipe
    tok, stop = loaded.tokenizer, loaded.encoder.stop_id
    budget = max_new_tokens_for(cfg, tok, data.eval)
    features = _hf_features(tok, list(islice(data.train, cfg.train.batch_size * steps)))
    prompts = [_hf_prompt_ids(tok, ex.prompt) for ex in data.eval]
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = _lora(_plain(loaded.model), cfg.adapter.lora)

    def exact_match(model) -> float:
        # tasktune's rule on both sides: an answer that never stopped within the budget is not credited.
        new = _hf_generate(model, prompts, tok.pad_token_id, stop, budget)
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return sum(stop in ids and is_correct(t.strip(), ex.answer, numeric=True)
                   for ids, t, ex in zip(new, texts, data.eval)) / len(prompts)

    class Target(TrainerCallback):
        def __init__(self):
            self.evals, self.paused, self.begin = [], 0.0, 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % every and state.global_step < args.max_steps:
                return
            started = time.perf_counter()
            model.eval()
            em = exact_match(model)
            model.train()
            self.evals.append({"step": state.global_step, "seconds": round(started - self.begin - self.paused, 1),
                               "exact_match": em})
            self.paused += time.perf_counter() - started
            print(f"hf step {state.global_step}: exact match {em:.1%}", file=sys.stderr, flush=True)
            control.should_training_stop = em >= TARGET

    target = Target()
    t = cfg.train
    args = TrainingArguments(output_dir="/tmp/tasktune-bench-hf", per_device_train_batch_size=t.batch_size,
                             learning_rate=t.lr, warmup_steps=t.warmup_steps, lr_scheduler_type="linear",
                             max_steps=steps, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, dataloader_drop_last=True, seed=cfg.seed)
    trainer = Trainer(model=model, args=args, train_dataset=features, callbacks=[target], data_collator=_counting_collator(tok))
    trainer.train()
    return _target_figures(target.evals)


def _child(args) -> int:
    if args.side.startswith("target_"):
        side = side_target_tasktune if args.side == "target_tasktune" else side_target_hf
        out = side(args.target_every, args.target_steps)
    elif args.side == "tasktune":
        out = side_tasktune(args.steps, args.warmup)
    elif args.side in ("hf", "hf_same"):
        out = side_hf(args.steps, args.warmup, args.side == "hf_same")
    else:
        out = side_generate(args.side.split("_", 1)[1])
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _run(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--target-every", str(args.target_every), "--target-steps", str(args.target_steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    print(f"  {side}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
    return result


def _to_level(run: dict, key: str) -> float:
    """A run's seconds to a level; its whole training time where it never got there."""
    return run[key] if run[key] is not None else run["seconds_trained"]


def _target_ratio(runs: dict, key: str, name: str) -> dict:
    """``{name}_speedup``: the median over the baseline's runs of its seconds to a level
    (``key`` in each run's figures) over tasktune's median; ``{name}_spread``: the
    smallest and largest ratio of one round's runs (round i's baseline over round i's
    tasktune). A run that never reached the level counts its whole training time, which
    makes the ratio a bound: ``{name}_bound`` says ``exact``, ``at_least`` or ``at_most``."""
    if "target_tasktune" not in runs:
        return {f"{name}_speedup": None, f"{name}_bound": "not measured"}
    t, h = runs["target_tasktune"], runs["target_hf"]
    t_reached, h_reached = all(r[key] is not None for r in t), all(r[key] is not None for r in h)
    if not any(r[key] is not None for r in t + h):
        return {f"{name}_speedup": None, f"{name}_bound": "neither side reached it"}
    ratio = statistics.median(_to_level(r, key) for r in h) / statistics.median(_to_level(r, key) for r in t)
    rounds = [_to_level(b, key) / _to_level(a, key) for a, b in zip(t, h)]
    bound = "exact" if t_reached and h_reached else "at_least" if t_reached else "at_most" if h_reached else "unknown"
    return {f"{name}_speedup": ratio, f"{name}_spread": [min(rounds), max(rounds)], f"{name}_bound": bound}


def _target_rows(runs: dict, ratios: dict) -> str:
    if "target_tasktune" not in runs:
        return "| time to 95% exact match | not measured (--no-target) | | |"

    def cell(side: list[dict], key: str) -> str:
        times = [f"{r[key] / 60:.1f}" if r[key] is not None else f"not reached ({r['seconds_trained'] / 60:.1f})" for r in side]
        return f"{statistics.median(_to_level(r, key) for r in side) / 60:.1f} min (runs: {', '.join(times)})"

    rows = []
    for level, key, name in ((TARGET, "seconds_to_target", "time_to_target"), (EASIER, "seconds_to_80", "time_to_80")):
        r = ratios[f"{name}_speedup"]
        mark = {"exact": "", "at_least": ">= ", "at_most": "<= ", "unknown": "? "}.get(ratios[f"{name}_bound"], "")
        text = ratios[f"{name}_bound"]
        if r is not None:
            lo, hi = ratios[f"{name}_spread"]
            text = f"{mark}{r:.2f}x (rounds {lo:.2f}-{hi:.2f}x)"
        rows.append(f"| time to {level:.0%} exact match (training, median of {len(runs['target_tasktune'])}) | "
                    f"{cell(runs['target_tasktune'], key)} | {cell(runs['target_hf'], key)} | {text} |")
    for side in ("target_tasktune", "target_hf"):
        for i, run in enumerate(runs[side]):
            trail = " / ".join(f"{e['exact_match']:.1%} at {e['step']} ({e['seconds'] / 60:.1f} min)" for e in run["evals"])
            rows.append(f"| {side[7:]} run {i + 1}, held-out exact match by step | {trail} | | |")
    return "\n".join(rows)


def _nonpad_table(n: int = 512) -> dict:
    """:func:`nonpad_shares` at batch sizes 4 to 32 on the first ``n`` training rows of
    the demo and of the worked * and / task, as tasktune encodes them."""
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.encoding import ChatEncoder
    from tasktune.model import load_tokenizer, resolve_model

    table = {}
    for name in ("arith_lora", "arith_muldiv_lora"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        data = build_datasets(cfg.data, 10, cfg.eval.seed, cfg.seed)
        encoder = ChatEncoder(load_tokenizer(resolve_model(cfg.model)), cfg.encoding.template, cfg.encoding.system_prompt)
        lengths = [len(encoder.encode(ex, cfg.encoding.max_length).input_ids) for ex in islice(data.train, n)]
        table[name] = {b: nonpad_shares(lengths, b, 2) for b in (4, 8, 16, 32)}
    return table


def _gemm_peak() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 2048**3 / (time.perf_counter() - started))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (order alternates)")
    parser.add_argument("--target-every", type=int, default=None,
                        help="steps between evaluations in the time-to-target runs (default: a fifth of the schedule)")
    parser.add_argument("--target-steps", type=int, default=None, help="the schedule's length in those runs (default: the demo's)")
    parser.add_argument("--target-rounds", type=int, default=3,
                        help="time-to-target runs of each side, alternating (hf first in odd rounds)")
    parser.add_argument("--no-target", action="store_true", help="skip the time-to-target runs (the demo's schedule on both sides)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.target_rounds < 1:
        parser.error("--target-rounds must be at least 1 (or give --no-target)")
    args.target_steps = args.target_steps or _demo_steps()
    args.target_every = args.target_every or max(1, args.target_steps // 5)
    if args.child:
        args.side = args.child
        return _child(args)
    import torch

    sides = ["tasktune", "hf", "hf_same"]
    runs: dict[str, list[dict]] = {s: [] for s in sides + ["gen_tasktune", "gen_hf"]}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        print(f"round {r + 1}: {' '.join(order)}", flush=True)
        for side in order:
            runs[side].append(_run(side, args))
        for side in (["gen_tasktune", "gen_hf"] if r % 2 == 0 else ["gen_hf", "gen_tasktune"]):
            runs[side].append(_run(side, args))
    if not args.no_target:
        runs["target_tasktune"], runs["target_hf"] = [], []
        for r in range(args.target_rounds):
            order = ["target_hf", "target_tasktune"] if r % 2 == 0 else ["target_tasktune", "target_hf"]
            print(f"time to target, round {r + 1}: {' '.join(order)}", flush=True)
            for side in order:
                runs[side].append(_run(side, args))
    mean = {s: {k: statistics.mean(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))} for s, rs in runs.items()
            if not s.startswith("target_")}
    peak = _gemm_peak()
    # Training FLOPs of a LoRA step, estimated: forward 2NT and the activation backward 2NT
    # over the non-embedding weights N (the adapters and the answer-only head are small).
    cfg, _, loaded = _setup()
    n_body = sum(p.numel() for name, p in loaded.model.named_parameters() if "embed" not in name)
    achieved = 4 * n_body * mean["tasktune"]["tokens_per_second"]
    ratios = {
        "train_speedup": mean["tasktune"]["examples_per_second"] / mean["hf"]["examples_per_second"],
        "train_speedup_same_tokens": mean["tasktune"]["examples_per_second"] / mean["hf_same"]["examples_per_second"],
        "generate_speedup": mean["gen_tasktune"]["new_tokens_per_second"] / mean["gen_hf"]["new_tokens_per_second"],
    }
    ratios.update(_target_ratio(runs, "seconds_to_target", "time_to_target"))
    ratios.update(_target_ratio(runs, "seconds_to_80", "time_to_80"))
    ratios["peak_share"] = achieved / peak
    shares = _nonpad_table()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/compare.py " + " ".join(sys.argv[1:]),
        "settings": {**SETTINGS, "lora_target": "all-linear", "dtype": "float32",
                     "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds},
        "runs": runs, "mean": mean, "ratios": ratios,
        "gemm_peak_gflops": peak / 1e9, "tasktune_train_gflops_estimate": achieved / 1e9,
        "nonpad_share_by_batch": shares,
    }
    out = ROOT / "benchmarks" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| figure | tasktune | HF Trainer + PEFT | ratio | goal |\n| --- | --- | --- | --- | --- |")
    t, h, hs = mean["tasktune"], mean["hf"], mean["hf_same"]
    gen_t, gen_h = mean["gen_tasktune"]["new_tokens_per_second"], mean["gen_hf"]["new_tokens_per_second"]
    print(f"| training examples/s, each at its defaults | {t['examples_per_second']:.2f} | {h['examples_per_second']:.2f} | "
          f"{ratios['train_speedup']:.2f}x | 3x |")
    print(f"| training examples/s, identical rows | {t['examples_per_second']:.2f} | {hs['examples_per_second']:.2f} | "
          f"{ratios['train_speedup_same_tokens']:.2f}x | 2x |")
    print(f"| non-pad tokens/s (defaults) | {t['tokens_per_second']:.0f} | {h['tokens_per_second']:.0f} | "
          f"{t['tokens_per_second'] / h['tokens_per_second']:.2f}x | |")
    print(f"| non-pad share of the computed positions (defaults) | {t['nonpad_share']:.1%} | {h['nonpad_share']:.1%} | | 95% |")
    print(f"| tokens per row (defaults) | {t['tokens_per_row']:.1f} | {h['tokens_per_row']:.1f} | | |")
    print(f"| peak RSS MiB (defaults) | {t['peak_rss_mib']:.0f} | {h['peak_rss_mib']:.0f} | {t['peak_rss_mib'] / h['peak_rss_mib']:.2f}x | |")
    print(f"| generation new tokens/s | {gen_t:.1f} | {gen_h:.1f} | {ratios['generate_speedup']:.2f}x | 3x |")
    print(f"| training FLOP/s, share of the fp32 GEMM peak | {ratios['peak_share']:.0%} | | | 70% |")
    print(_target_rows(runs, ratios))
    print(f"\nfp32 GEMM peak {peak / 1e9:.0f} GFLOP/s; tasktune training ~{achieved / 1e9:.0f} GFLOP/s "
          f"(4 x {n_body / 1e6:.0f}M non-embedding weights x non-pad tokens/s)")
    print("\nnon-pad share of the computed positions by batch size (consecutive batches of 512 training rows; "
          "tasktune in 2 length-sorted micro-batches):\n| rows | batch | tasktune padded | tasktune packed | HF collator |\n"
          "| --- | --- | --- | --- | --- |")
    for name, by_batch in shares.items():
        for batch, share in by_batch.items():
            print(f"| {name} | {batch} | {share['padded']:.1%} | {share['packed']:.1%} | {share['hf']:.1%} |")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
