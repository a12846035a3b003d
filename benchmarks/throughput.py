"""Training throughput (examples/s) of config variants, measured side by side.

Each variant is a set of ``key=value`` overrides on one config. All variants train in
the same process from copies of one loaded base model, in alternating rounds of
``--steps`` optimizer steps (the order flips every round), so that the minute-to-minute
drift of a shared CPU falls on every variant alike. Prints examples/s per variant and
its speed relative to the first. Warm-up steps are not timed.

Usage:
    python benchmarks/throughput.py "train.share_prefix=true" "train.share_prefix=false"
    python benchmarks/throughput.py --rounds 4 "" "adapter.lora.r=16"
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys

import torch

from tasktune.adapters import get_adapter
from tasktune.config import load_config
from tasktune.data import build_datasets
from tasktune.encoding import ChatEncoder
from tasktune.recipes.common import load_base
from tasktune.train import LoopState, make_accelerator, train_steps

from steptimer import StepTimer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/arith_lora.yaml")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per variant per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("variants", nargs="+", help='each a quoted list of overrides; "" is the config as is')
    args = parser.parse_args()
    total = args.warmup + args.steps * args.rounds
    fixed = [f"train.max_steps={total}", "train.max_minutes=null", "train.warmup_steps=2"]
    cfgs = [load_config(args.config, shlex.split(v) + fixed) for v in args.variants]
    loaded = load_base(cfgs[0])
    runs = []
    for cfg in cfgs:
        if (cfg.model, cfg.dtype) != (cfgs[0].model, cfgs[0].dtype):
            raise SystemExit("variants must share model and dtype (they train copies of one base)")
        accelerator = make_accelerator(cfg.train, cfg.seed)
        data = build_datasets(cfg.data, 10, cfg.eval.seed, cfg.seed)
        encoder = ChatEncoder(loaded.tokenizer, cfg.encoding.template, cfg.encoding.system_prompt)
        adapter = get_adapter(cfg.adapter.method)
        model = adapter.apply(copy.deepcopy(loaded.model), cfg.adapter)
        groups = adapter.param_groups(model, cfg.adapter)
        runs.append(StepTimer(train_steps(model, accelerator, encoder, data.train, cfg.train, cfg.encoding, LoopState(), groups)))
    del loaded
    for run in runs:
        run.advance(args.warmup, timed=False)
    for r in range(args.rounds):
        for run in runs if r % 2 == 0 else runs[::-1]:
            run.advance(args.steps)
    first = runs[0].rates()["examples_per_second"]
    print(f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps per variant")
    for variant, run in zip(args.variants, runs):
        rate = run.rates()["examples_per_second"]
        print(f"{variant or '(config as is)'}: {rate:.2f} examples/s, {rate / first:.2f}x the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
