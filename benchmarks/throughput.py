"""Training throughput (examples/s) of an arithmetic config on this machine.

Runs 4 warm-up steps, then N timed steps of the real training loop, and prints
examples per second. Use it to compare settings side by side in one sitting (timings
drift from minute to minute on a shared CPU: alternate runs, compare ratios).

Usage:
    python benchmarks/throughput.py [--steps 10] [key=value ...]
"""

from __future__ import annotations

import argparse
import sys

from tasktune.adapters import get_adapter
from tasktune.config import load_config
from tasktune.data import build_datasets
from tasktune.recipes.common import load_base
from tasktune.train import EncodeCounts, make_accelerator, train_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/arith_lora.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    warm = 4
    cfg = load_config(args.config, [f"train.max_steps={warm + args.steps}", "train.max_minutes=null", "train.warmup_steps=2", *args.overrides])
    accelerator = make_accelerator(cfg.train, cfg.seed)
    data = build_datasets(cfg.data, 10, cfg.eval.seed, cfg.seed)
    loaded = load_base(cfg)
    adapter = get_adapter(cfg.adapter.method)
    model = adapter.apply(loaded.model, cfg.adapter)
    steps = list(train_steps(model, accelerator, loaded.encoder, data.train, cfg.train, cfg.encoding, EncodeCounts(), adapter.param_groups(model, cfg.adapter)))
    first, last = steps[warm - 1], steps[-1]
    rate = (last.examples - first.examples) / (last.seconds - first.seconds)
    tokens = (last.tokens - first.tokens) / (last.seconds - first.seconds)
    print(f"{' '.join(args.overrides) or '(config as is)'}: {rate:.2f} examples/s, {tokens:.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
