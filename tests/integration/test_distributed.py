"""Data parallel training on this CPU: `torchrun --nproc_per_node 2 -m tasktune train`
(DDP over gloo, and FSDP2 sharding asked for through accelerate's environment) takes the
same steps as one process at the same global batch."""

from __future__ import annotations

import json
import os
import shutil
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
        # The data the tolerances below were set on: plain values, operands uniform. At lr
        # 2e-2 float32 rounding that differs between batch layouts grows over 20 steps by an
        # amount that depends on the rows (worked answers, or more short operands, took the
        # largest difference from 2e-6 to 1e-3, with or without the length sort).
        "data.arithmetic.answer_format=value", "data.arithmetic.train_digit_sampling=uniform",
        "data.arithmetic.digits_so_far=false", "data.arithmetic.train_prompt_formats=null", "data.context.share=0",
        "train.packing=false",
    ]


def _losses(run: Path, key: str = "loss") -> list[float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


def _torchrun(args: list[str], **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tasktune", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _max_difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_two_processes_follow_the_single_process_loss_curve(tiny_model_dirs, tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    one = tasktune(*_args(tiny_model_dirs["llama"], single))
    assert one.returncode == 0, one.stderr
    two = _torchrun(_args(tiny_model_dirs["llama"], double))
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


# What `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets (it launches a
# single process when told --cpu, so on this CPU the environment is given to torchrun).
FSDP = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP"}


@pytest.mark.slow  # five runs, three of them two processes: 80 s on a 2-core Zen 1
def test_fsdp_two_processes_follow_the_single_process_run_and_resume(tiny_model_dirs, tmp_path):
    single, sharded, resumed = tmp_path / "one", tmp_path / "fsdp", tmp_path / "fsdp_resumed"
    model = tiny_model_dirs["llama"]
    one = tasktune(*_args(model, single), "eval.every=10")
    assert one.returncode == 0, one.stderr
    two = _torchrun([*_args(model, sharded), "eval.every=10"], **FSDP)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "sharded by FSDP2 over 2 processes" in two.stderr  # really sharded, not DDP
    # The same curve: loss and gradient norm of each of the 20 steps, so every process
    # started from one initialisation, trained on its share and was reduced right.
    for key in ("loss", "grad_norm"):
        a, b = _losses(single, key), _losses(sharded, key)
        assert len(a) == len(b) == 20
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (key, list(zip(a, b)))
    # Saved whole, not as one process's shard: the adapter, the checkpoint's trainable
    # tensors and its optimizer moments equal the single process's.
    for name in ("adapter/adapter_model.safetensors", "checkpoint-10/trainable.safetensors",
                 "checkpoint-10/optimizer.safetensors", "checkpoint-best/adapter_model.safetensors"):
        assert _max_difference(_tensors(single / name), _tensors(sharded / name)) < 5e-5, name
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (single, sharded))
    assert m2["final"]["exact_match"] == m1["final"]["exact_match"]
    assert [e["exact_match"] for e in m2["evals"]] == [e["exact_match"] for e in m1["evals"]]
    assert two.stdout.count("exact_match on 8 held-out examples") == 1  # evaluated once, by the main process
    # A crash after checkpoint-10: resume sharded from it (the whole optimizer state is cut
    # back into shards) and end where the uninterrupted run ended.
    resumed.mkdir()
    for name in ("config.yaml", "train_log.jsonl", "checkpoint-10"):
        src = sharded / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, resumed / name)
    again = _torchrun([*_args(model, resumed), "eval.every=10", "--resume"], **FSDP)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout
    assert max(abs(x - y) for x, y in zip(_losses(sharded), _losses(resumed))) < 1e-5
    assert _max_difference(_tensors(sharded / "adapter/adapter_model.safetensors"),
                           _tensors(resumed / "adapter/adapter_model.safetensors")) < 1e-6
