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
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone

import compare_sides as sides
from compare_figures import gemm_peak, nonpad_table, print_tables, target_ratio
from compare_sides import ROOT, SETTINGS


def main() -> int:
    args = _arguments()
    if args.child:
        return _child(args)
    runs = _alternate(args)
    result = _figures(runs, args)
    out = ROOT / "benchmarks" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_tables(result)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


def _arguments() -> argparse.Namespace:
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
    args.target_steps = args.target_steps or sides.demo_steps()
    args.target_every = args.target_every or max(1, args.target_steps // 5)
    args.side = args.child
    return args


def _alternate(args) -> dict[str, list[dict]]:
    """Every side's runs, each in its own process, the order flipping every round."""
    train = ["tasktune", "hf", "hf_same"]
    runs: dict[str, list[dict]] = {s: [] for s in train + ["gen_tasktune", "gen_hf"]}
    for r in range(args.rounds):
        order = train if r % 2 == 0 else train[::-1]
        print(f"round {r + 1}: {' '.join(order)}", flush=True)
        for side in order + (["gen_tasktune", "gen_hf"] if r % 2 == 0 else ["gen_hf", "gen_tasktune"]):
            runs[side].append(_run(side, args))
    if not args.no_target:
        runs["target_tasktune"], runs["target_hf"] = [], []
        for r in range(args.target_rounds):
            order = ["target_hf", "target_tasktune"] if r % 2 == 0 else ["target_tasktune", "target_hf"]
            print(f"time to target, round {r + 1}: {' '.join(order)}", flush=True)
            for side in order:
                runs[side].append(_run(side, args))
    return runs


def _figures(runs: dict[str, list[dict]], args) -> dict:
    """latest.json: each side's mean figures, the ratios, the machine's GEMM peak and the
    share of it tasktune's training reaches, the non-pad shares by batch size."""
    import torch

    mean = {s: {k: statistics.mean(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))} for s, rs in runs.items()
            if not s.startswith("target_")}
    peak = gemm_peak()
    # Training FLOPs of a LoRA step, estimated: forward 2NT and the activation backward 2NT
    # over the non-embedding weights N (the adapters and the answer-only head are small).
    _, _, loaded = sides.setup()
    n_body = sum(p.numel() for name, p in loaded.model.named_parameters() if "embed" not in name)
    achieved = 4 * n_body * mean["tasktune"]["tokens_per_second"]
    ratios = {
        "train_speedup": mean["tasktune"]["examples_per_second"] / mean["hf"]["examples_per_second"],
        "train_speedup_same_tokens": mean["tasktune"]["examples_per_second"] / mean["hf_same"]["examples_per_second"],
        "generate_speedup": mean["gen_tasktune"]["new_tokens_per_second"] / mean["gen_hf"]["new_tokens_per_second"],
        **target_ratio(runs, "seconds_to_target", "time_to_target"),
        **target_ratio(runs, "seconds_to_80", "time_to_80"),
        "peak_share": achieved / peak,
    }
    return {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/compare.py " + " ".join(sys.argv[1:]),
        "settings": {**SETTINGS, "lora_target": "all-linear", "dtype": "float32",
                     "timed_steps": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds},
        "runs": runs, "mean": mean, "ratios": ratios,
        "gemm_peak_gflops": peak / 1e9, "tasktune_train_gflops_estimate": achieved / 1e9, "non_embedding_weights": n_body,
        "nonpad_share_by_batch": nonpad_table(),
    }


def _run(side: str, args) -> dict:
    """One side's figures, from a process of its own (its peak RSS is its own)."""
    cmd = [sys.executable, __file__, "--child", side, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--target-every", str(args.target_every), "--target-steps", str(args.target_steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    print(f"  {side}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
    return result


def _child(args) -> int:
    if args.side.startswith("target_"):
        side = sides.side_target_tasktune if args.side == "target_tasktune" else sides.side_target_hf
        out = side(args.target_every, args.target_steps)
    elif args.side == "tasktune":
        out = sides.side_tasktune(args.steps, args.warmup)
    elif args.side in ("hf", "hf_same"):
        out = sides.side_hf(args.steps, args.warmup, args.side == "hf_same")
    else:
        out = sides.side_generate(args.side.split("_", 1)[1])
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
