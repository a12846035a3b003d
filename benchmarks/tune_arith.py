"""Learning curve of an arithmetic config: exact match on the held-out set every N steps.

The tuning harness behind the LoRA settings in BENCHMARKS.md. It trains exactly as
`tasktune train` does (same data, encoder, adapter, loop) and, every N steps,
evaluates the held-out set with add/sub and negative-result splits, then prints the
first wrong answers. Evaluation time is not counted in train seconds.

Usage:
    python benchmarks/tune_arith.py 75 --config configs/arith_lora.yaml train.max_steps=300 train.lr=3e-3
"""

from __future__ import annotations

import argparse
import collections
import sys

from tasktune.adapters import get_adapter
from tasktune.config import load_config
from tasktune.data import build_datasets
from tasktune.recipes.common import evaluate_examples, load_base
from tasktune.train import LoopState, make_accelerator, train_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("every", type=int, help="evaluate every N steps")
    parser.add_argument("--config", default="configs/arith_lora.yaml")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides + ["eval.base=false"])
    accelerator = make_accelerator(cfg.train, cfg.seed)
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    loaded = load_base(cfg)
    adapter = get_adapter(cfg.adapter.method)
    model = loaded.model = adapter.apply(loaded.model, cfg.adapter)
    groups = adapter.param_groups(model, cfg.adapter)
    rows: list[dict] = []
    for info in train_steps(model, accelerator, loaded.encoder, data.train, cfg.train, cfg.encoding, LoopState(), groups):
        if info.step % args.every and info.step != cfg.train.max_steps:
            continue
        summary, rows = evaluate_examples(loaded, data.eval, None)
        model.train()
        right: collections.Counter = collections.Counter()
        total: collections.Counter = collections.Counter()
        for r in rows:
            key = r["category"][:3] + ("neg" if r["reference"].startswith("-") else "")
            total[key] += 1
            right[key] += r["correct"]
        split = " ".join(f"{k}={right[k]}/{total[k]}" for k in sorted(total))
        print(f"STEP {info.step} examples={info.examples} train_s={info.seconds:.0f} "
              f"ex/s={info.examples / info.seconds:.1f} EM={summary['exact_match']:.3f} {split}", flush=True)
    for r in [r for r in rows if not r["correct"]][:15]:
        print("WRONG", r["prompt"], "reference", r["reference"], "got", r["prediction"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
