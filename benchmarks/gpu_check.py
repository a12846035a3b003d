"""GPU check: single-GPU training of the bundled model in bf16 and in fp16, LoRA and full.

For each precision and method it trains the demo task for a few steps with
`tasktune.recipes.finetune` (no DDP) and prints: the loss at the first and last step
(finite, falling), the dtype of the trainable weights during training (float32: the
tutorial's "fp16 weights, fp32 loss"), whether fp16 ran with a loss scaler, peak GPU
memory, examples/s and held-out exact match. Exit status 1 if any check fails.

Usage (on a machine with a CUDA GPU):
    python benchmarks/gpu_check.py [--steps 60]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from tasktune.config import load_config
from tasktune.recipes import finetune

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "arith_lora.yaml"


def _run(dtype: str, method: str, steps: int, out: Path) -> dict:
    recipe = importlib.import_module("tasktune.recipes.finetune")  # the module (the package exports the function)
    seen: dict = {}
    real = recipe.train_steps

    def watched(model, accelerator, *args, **kwargs):
        for info in real(model, accelerator, *args, **kwargs):
            if info.step == 1:
                seen["trainable_dtypes"] = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
                seen["base_dtypes"] = sorted({str(p.dtype) for p in model.parameters() if not p.requires_grad})
                seen["mixed_precision"] = accelerator.mixed_precision
                seen["loss_scaler"] = accelerator.scaler is not None
            yield info

    recipe.train_steps = watched
    try:
        torch.cuda.reset_peak_memory_stats()
        lr = "2e-3" if method == "lora" else "1e-4"
        cfg = load_config(CONFIG, [f"dtype={dtype}", f"adapter.method={method}", f"train.lr={lr}", f"train.max_steps={steps}",
                                   "train.max_minutes=null", "eval.max_examples=100", f"output_dir={out}"])
        metrics = finetune(cfg, overwrite=True)
    finally:
        recipe.train_steps = real
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]
    return {
        **seen,
        "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "examples_per_second": metrics["train"]["examples_per_second"],
        "base_em": metrics["base"]["exact_match"], "tuned_em": metrics["final"]["exact_match"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check", file=sys.stderr)
        return 1
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("bfloat16", "float16"):
            for method in ("lora", "full"):
                r = _run(dtype, method, args.steps, Path(tmp) / f"{dtype}_{method}")
                ok = (r["trainable_dtypes"] == ["torch.float32"] and r["last_loss"] < r["first_loss"]
                      and all(math.isfinite(r[k]) for k in ("first_loss", "last_loss"))
                      and (dtype != "float16" or r["loss_scaler"]))
                failed += not ok
                print(f"{'OK  ' if ok else 'FAIL'} {dtype:9} {method:5} {json.dumps(r)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
