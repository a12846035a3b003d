"""Generation side by side: tasktune's continuous batching against Hugging Face
``generate`` in length-sorted batches, on the same prompts, caps and batch size.

Loads a run (its adapter on its base) or the bundled base model, renders the run's
held-out problems as evaluation does, and generates their answers greedily both ways,
alternating (continuous, generate, generate, continuous, ...) for ``--rounds`` rounds.
Prints new tokens/s and seconds per side (medians), their ratio, and whether the two
sides' answers are identical.

Usage:
    python benchmarks/generation.py --run runs/arith_lora [--batch 64 --rounds 3 --limit 300]
    python benchmarks/generation.py --batch 32 --max-new-tokens 8 --limit 64   # base model, make bench's workload
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(run: str | None, limit: int):
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.recipes.common import load_base, load_run

    loaded = load_run(Path(run)) if run else load_base(load_config(ROOT / "configs" / "arith_lora.yaml", []))
    cfg = loaded.cfg
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    return loaded, data.eval[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a run folder (default: the bundled base model)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=300, help="held-out problems used")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: the task's own cap")
    args = parser.parse_args()

    import torch

    import tasktune.generate.batched as batched
    from tasktune.generate import generate_completions
    from tasktune.recipes.common import max_new_tokens_for

    torch.manual_seed(0)
    loaded, examples = _load(args.run, args.limit)
    prompts = [loaded.encoder.prompt_ids(ex) for ex in examples]
    cap = args.max_new_tokens or max_new_tokens_for(loaded.cfg, loaded.tokenizer, examples)
    supports = batched.supports

    def side(which: str) -> tuple[float, int, list[str]]:
        batched.supports = supports if which == "continuous" else (lambda model: False)
        started = time.perf_counter()
        done = generate_completions(loaded.model, loaded.tokenizer, prompts, loaded.encoder.stop_id, cap, args.batch)
        seconds = time.perf_counter() - started
        batched.supports = supports
        return seconds, sum(c.tokens for c in done), [c.text for c in done]

    times: dict[str, list[float]] = {"continuous": [], "generate": []}
    tokens, texts = {}, {}
    for r in range(args.rounds):
        for which in ("continuous", "generate") if r % 2 == 0 else ("generate", "continuous"):
            seconds, tokens[which], texts[which] = side(which)
            times[which].append(seconds)
            print(f"round {r + 1} {which}: {seconds:.2f} s, {tokens[which] / seconds:.1f} new tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    differ = [i for i, (a, b) in enumerate(zip(texts["continuous"], texts["generate"])) if a != b]
    result = {
        "run": args.run or "base", "prompts": len(prompts), "batch": args.batch, "max_new_tokens": cap,
        "new_tokens": tokens, "seconds": times,
        "tokens_per_s": {k: round(tokens[k] / med[k], 1) for k in med},
        "ratio": round(med["generate"] / med["continuous"], 3),
        "answers_differ": len(differ), "examples_differ": [(texts["continuous"][i], texts["generate"][i]) for i in differ[:3]],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
