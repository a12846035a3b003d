"""tasktune against Hugging Face Trainer + PEFT, side by side, in one invocation.

Every measurement runs in its own process (so peak RSS is that side's own), on the
bundled SmolLM2-135M, with the same LoRA (r=16, alpha 32, all linear layers, no
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

Not measured yet: time to 95% exact match (issue #7).

Usage:
    python bench/compare.py [--steps 8 --warmup 2 --rounds 2]
Writes bench/results/latest.json and prints the ratio table.
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
OVERRIDES = ["adapter.lora.r=16", "adapter.lora.alpha=32", "adapter.lora.dropout=0.0", "train.lr=1e-3",
             "train.batch_size=16", "train.warmup_steps=0", "train.schedule=constant", "train.max_minutes=null"]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup():
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.recipes.common import load_base

    cfg = load_config(CONFIG, OVERRIDES)
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    return cfg, data, load_base(cfg)


def _lora(model):
    import peft

    config = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return peft.get_peft_model(model, config)


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
            "tokens_per_row": tokens / (cfg.train.batch_size * len(times))}


def side_hf(steps: int, warmup: int, same_tokens: bool) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    cfg, data, loaded = _setup()
    tok = loaded.tokenizer
    n = 16 * (warmup + steps)
    if same_tokens:
        features = [{"input_ids": r.input_ids, "labels": r.labels} for r in _rows(loaded, data, n)]
    else:  # the docs' way: the tokenizer's own template, prompt masked
        features = []
        for ex in islice(data.train, n):
            prompt = tok.apply_chat_template([{"role": "user", "content": ex.prompt}], add_generation_prompt=True, tokenize=False)
            full = tok.apply_chat_template([{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.response}], tokenize=False)
            p_ids = tok(prompt, add_special_tokens=False).input_ids
            ids = tok(full, add_special_tokens=False).input_ids
            features.append({"input_ids": ids, "labels": [-100] * len(p_ids) + ids[len(p_ids):]})
    for f in features:
        f["attention_mask"] = [1] * len(f["input_ids"])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # Trainer refuses a model loaded from GGUF (it counts as quantized, though its tensors
    # are de-quantized to fp32); a Hugging Face user would convert it to a plain folder
    # first. Dropping the GGUF marker is the same model without the round trip.
    base = loaded.model
    base.hf_quantizer = None
    base.is_quantized = False
    base.config.__dict__.pop("quantization_config", None)
    model = _lora(base)

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_begin(self, args, state, control, **kw):
            self.marks.append(("begin", time.perf_counter()))

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(("end", time.perf_counter()))

    clock = Clock()
    args = TrainingArguments(output_dir="/tmp/tasktune-bench-hf", per_device_train_batch_size=16, learning_rate=1e-3,
                             max_steps=warmup + steps, report_to=[], save_strategy="no", logging_strategy="no",
                             lr_scheduler_type="constant", disable_tqdm=True, dataloader_drop_last=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=features, callbacks=[clock],
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    trainer.train()
    begins = [t for k, t in clock.marks if k == "begin"]
    ends = [t for k, t in clock.marks if k == "end"]
    times = [e - b for b, e in zip(begins, ends)][warmup:]
    # Steps follow the dataloader's (shuffled) order; non-pad tokens per step are those of
    # 16 rows, on average the mean row length.
    per_row = statistics.mean(len(f["input_ids"]) for f in features)
    return {"examples_per_second": 16 * len(times) / sum(times), "tokens_per_second": 16 * per_row * len(times) / sum(times),
            "peak_rss_mib": _peak_rss_mib(), "tokens_per_row": per_row, "gradient_checkpointing": args.gradient_checkpointing}


def side_generate(which: str, n: int = 64, max_new_tokens: int = 8) -> dict:
    import torch

    from tasktune.encoding import pad_left
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
        new = 0
        pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else stop
        with torch.inference_mode():
            for i in range(0, n, 32):
                batch = pad_left(prompts[i : i + 32], pad)
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=pad)
                for row in out[:, batch["input_ids"].shape[1] :].tolist():
                    new += row.index(stop) + 1 if stop in row else len(row)
    seconds = time.perf_counter() - started
    return {"new_tokens_per_second": new / seconds, "new_tokens": new, "seconds": seconds}


def _child(args) -> int:
    if args.side == "tasktune":
        out = side_tasktune(args.steps, args.warmup)
    elif args.side in ("hf", "hf_same"):
        out = side_hf(args.steps, args.warmup, args.side == "hf_same")
    else:
        out = side_generate(args.side.split("_", 1)[1])
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _run(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    print(f"  {side}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
    return result


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
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    mean = {s: {k: statistics.mean(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))} for s, rs in runs.items()}
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
        "time_to_target_speedup": None,
    }
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/compare.py " + " ".join(sys.argv[1:]),
        "settings": {"lora": "r=16 alpha=32 all-linear", "lr": 1e-3, "batch": 16, "dtype": "float32",
                     "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds},
        "runs": runs, "mean": mean, "ratios": ratios,
        "gemm_peak_gflops": peak / 1e9, "tasktune_train_gflops_estimate": achieved / 1e9,
    }
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| figure | tasktune | HF Trainer + PEFT | ratio |\n| --- | --- | --- | --- |")
    t, h, hs = mean["tasktune"], mean["hf"], mean["hf_same"]
    print(f"| training examples/s, each at its defaults | {t['examples_per_second']:.2f} | {h['examples_per_second']:.2f} | {ratios['train_speedup']:.2f}x |")
    print(f"| training examples/s, identical token streams | {t['examples_per_second']:.2f} | {hs['examples_per_second']:.2f} | {ratios['train_speedup_same_tokens']:.2f}x |")
    print(f"| non-pad tokens/s (defaults) | {t['tokens_per_second']:.0f} | {h['tokens_per_second']:.0f} | {t['tokens_per_second'] / h['tokens_per_second']:.2f}x |")
    print(f"| tokens per row (defaults) | {t['tokens_per_row']:.1f} | {h['tokens_per_row']:.1f} | |")
    print(f"| peak RSS MiB (defaults) | {t['peak_rss_mib']:.0f} | {h['peak_rss_mib']:.0f} | {t['peak_rss_mib'] / h['peak_rss_mib']:.2f}x |")
    print(f"| generation new tokens/s | {mean['gen_tasktune']['new_tokens_per_second']:.1f} | {mean['gen_hf']['new_tokens_per_second']:.1f} | {ratios['generate_speedup']:.2f}x |")
    print(f"| time to 95% exact match | not measured | not measured | - |")
    print(f"\nfp32 GEMM peak {peak / 1e9:.0f} GFLOP/s; tasktune training ~{achieved / 1e9:.0f} GFLOP/s (4 x {n_body / 1e6:.0f}M x tokens/s)")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
