"""Where a training step's time goes: base products, LoRA products, the vocabulary
projection, attention, elementwise work, the optimizer and the data.

Trains ``--warmup`` untimed steps of a config, then profiles ``--steps`` optimizer steps
with ``torch.profiler`` and splits the CPU time by the ops' own (self) time:

* matrix products (``aten::mm``/``addmm``/``bmm``) by their shapes: one side of LoRA's
  rank is a LoRA product, one side of the vocabulary size the vocabulary projection, the
  rest the base model's linear layers;
* attention: PyTorch's scaled-dot-product kernels;
* optimizer: everything under ``Optimizer.step``;
* elementwise and the rest: every other op (norms, activations, adds, copies, the loss);
* outside the ops: the step's wall time less its ops' (Python, drawing the problems,
  encoding and padding the rows).

Usage:
    python benchmarks/profile_step.py [--config configs/arith_lora.yaml --steps 3] [OVERRIDES ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from torch.profiler import ProfilerActivity, profile

from tasktune.adapters import get_adapter
from tasktune.config import load_config
from tasktune.data import build_datasets
from tasktune.encoding import ChatEncoder
from tasktune.recipes.common import load_base
from tasktune.train import LoopState, make_accelerator, train_steps

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")


def _kind(name: str, shapes, rank: int, vocab: int) -> str:
    if name in PRODUCTS:
        dims = {d for shape in shapes if shape for d in shape}
        if vocab in dims:
            return "vocabulary projection"
        if rank in dims:
            return "LoRA products"
        return "base products"
    if "scaled_dot_product" in name or "attention" in name:
        return "attention"
    return "elementwise and the rest"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/arith_lora.yaml")
    parser.add_argument("--steps", type=int, default=3, help="profiled optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    total = args.warmup + args.steps
    cfg = load_config(args.config, [*args.overrides, f"train.max_steps={total}", "train.max_minutes=null"])
    loaded = load_base(cfg)
    model = get_adapter(cfg.adapter.method).apply(loaded.model, cfg.adapter)
    data = build_datasets(cfg.data, 1, cfg.eval.seed, cfg.seed)
    encoder: ChatEncoder = loaded.encoder
    steps = train_steps(model, make_accelerator(cfg.train, cfg.seed), encoder, iter(data.train), cfg.train,
                        cfg.encoding, LoopState())
    for _ in range(args.warmup):
        next(steps)
    rank = cfg.adapter.lora.r if cfg.adapter.method == "lora" else -1
    vocab = model.get_input_embeddings().weight.shape[0]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        infos = [next(steps) for _ in range(args.steps)]
        wall = time.perf_counter() - started
    split: dict[str, float] = defaultdict(float)
    optimizer = [e for e in prof.key_averages() if e.key.startswith("Optimizer.")]
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key.startswith("Optimizer.") or event.key.startswith("ProfilerStep"):
            continue
        split[_kind(event.key, event.input_shapes, rank, vocab)] += event.self_cpu_time_total
    # The ops under Optimizer.step / zero_grad were counted by kind above (all elementwise):
    # their time moves to the optimizer, with the records' own time.
    split["elementwise and the rest"] -= sum(e.cpu_time_total - e.self_cpu_time_total for e in optimizer)
    split["optimizer"] = sum(e.cpu_time_total for e in optimizer)
    ops_seconds = sum(split.values()) / 1e6
    rows = infos[-1].examples - infos[0].examples + cfg.train.batch_size
    print(f"{args.config} {' '.join(args.overrides)}: {args.steps} steps, {rows} rows, {wall:.2f} s "
          f"({rows / wall:.2f} examples/s, under the profiler)")
    print("\n| part | seconds | share of the steps' wall time |\n| --- | --- | --- |")
    parts = {**{k: v / 1e6 for k, v in split.items()}, "outside the ops (Python, data)": max(0.0, wall - ops_seconds)}
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {seconds / wall:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
