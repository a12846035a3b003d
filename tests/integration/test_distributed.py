"""Data parallel training on this CPU: `torchrun --nproc_per_node 2 -m tasktune train`
(DDP over gloo) takes the same steps as one process at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import CONFIG, tasktune

pytestmark = pytest.mark.integration


def _args(model_dir: Path, out: Path) -> list[str]:
    return [
        "train", str(CONFIG), f"model={model_dir}", f"output_dir={out}", "train.max_steps=20",
        "train.batch_size=8", "train.grad_accum=2", "train.log_every=1", "eval.max_examples=8",
        "train.save_every=10", "train.lr=2e-2", "train.warmup_steps=2",
    ]


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_two_processes_follow_the_single_process_loss_curve(tiny_model_dirs, tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    one = tasktune(*_args(tiny_model_dirs["llama"], single))
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "tasktune", *_args(tiny_model_dirs["llama"], double)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(single), _losses(double)
    assert len(a) == len(b) == 20
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, list(zip(a, b))
    # The curves compared are not flat: the loss falls, and moves from step to step (other
    # batches) by far more than the tolerance, so a process seeing other data would fail.
    assert a[-1] < a[0] - 0.05, a
    assert min(abs(x - y) for x, y in zip(a, a[1:])) > 1e-3, a
    # Only the main process reports and writes: one summary line, one evaluation each.
    assert two.stdout.count("exact_match on 8 held-out examples") == 1
    assert two.stdout.count("base exact_match") == 1
    metrics = json.loads((double / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 20 and metrics["train"]["examples"] == 160
    assert sorted(p.name for p in double.glob("checkpoint-*")) == ["checkpoint-10"]
    assert sorted(p.name for p in (double / "checkpoint-10").glob("rng-*.json")) == ["rng-0.json", "rng-1.json"]
