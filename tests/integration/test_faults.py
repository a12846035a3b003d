"""Runs that die: kill -9 a real training process, resume it, and get the same result as
an uninterrupted run; a run folder is never overwritten silently; a diverging loss stops
the run with the step and the last good checkpoint."""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import TASKTUNE, run_process
from test_cli import CONFIG, tasktune

pytestmark = pytest.mark.integration

STEPS = 40


def _args(model_dir: Path, out: Path) -> list[str]:
    return [
        "train", str(CONFIG), f"model={model_dir}", f"output_dir={out}", f"train.max_steps={STEPS}",
        "train.batch_size=4", "train.save_every=4", "train.log_every=1", "eval.max_examples=12",
        "eval.every=10", "eval.every_examples=6", "adapter.lora.dropout=0.1",  # dropout: the random state must resume too
    ]


def _logged(run: Path) -> list[int]:
    """Steps train_log.jsonl holds so far (a line may be half written)."""
    path = run / "train_log.jsonl"
    text = path.read_text() if path.is_file() else ""
    return [json.loads(line)["step"] for line in text.splitlines()[:-1] if '"loss"' in line]


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "whole"
    result = run_process(*_args(tiny_model_dirs["llama"], out))  # compared bit for bit with another process's run
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])  # a second kill point
def test_kill_9_then_resume_ends_as_an_uninterrupted_run(uninterrupted, tiny_model_dirs, tmp_path, seed):
    out = tmp_path / "killed"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([TASKTUNE, *_args(tiny_model_dirs["llama"], out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill at a random step after the first checkpoint (mid-step, mid-evaluation or
    # mid-checkpoint-write alike), found in the log rather than by the clock, so that a
    # faster or slower machine kills at the same point of the run.
    kill_after = random.Random(seed).randint(5, STEPS - 8)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-4" / "trainer_state.json").exists() or max(_logged(out), default=0) < kill_after:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the run finished before it was killed; kill it sooner"
    steps_done = max(_losses(out))

    again = tasktune(*_args(tiny_model_dirs["llama"], out))  # without --resume: refused, nothing touched
    assert again.returncode == 1 and "already holds a run" in again.stderr and "--resume" in again.stderr
    assert "Traceback" not in again.stderr

    resumed = tasktune(*_args(tiny_model_dirs["llama"], out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    whole, after = (json.loads((d / "metrics.json").read_text()) for d in (uninterrupted, out))
    assert after["final"] == whole["final"] and after["base"] == whole["base"]
    untimed = [[{k: v for k, v in e.items() if k != "seconds"} for e in m["evals"]] for m in (whole, after)]
    assert untimed[0] == untimed[1] and len(untimed[0]) == 3
    assert after["train"]["steps"] == STEPS and after["train"]["final_loss"] == whole["train"]["final_loss"]
    assert _losses(out) == _losses(uninterrupted)  # every step, before and after the kill
    assert (out / "predictions.jsonl").read_text() == (uninterrupted / "predictions.jsonl").read_text()
    assert steps_done < STEPS


def test_overwrite_starts_over_and_resume_needs_a_checkpoint(tiny_model_dirs, tmp_path):
    out = tmp_path / "run"
    args = [*_args(tiny_model_dirs["llama"], out), "train.max_steps=2", "train.save_every=0", "eval.every=0"]
    assert tasktune(*args).returncode == 0
    (out / "keep.txt").write_text("not ours")
    finished = tasktune(*args, "--resume")
    assert finished.returncode == 1 and "has finished" in finished.stderr
    assert tasktune(*args, "--overwrite").returncode == 0
    assert (out / "keep.txt").read_text() == "not ours"  # only the run's own files are replaced
    (out / "metrics.json").unlink()
    nothing = tasktune(*args, "--resume")
    assert nothing.returncode == 1 and "no complete checkpoint" in nothing.stderr


def test_a_nan_loss_stops_the_run_naming_the_step_and_the_last_checkpoint(tiny_model_dirs, tmp_path, monkeypatch):
    """The weights go nan after step 6: step 7 is refused, checkpoint-6 is the last good one."""
    from tasktune.config import load_config
    from tasktune.train import TrainingStopped

    recipe = importlib.import_module("tasktune.recipes.finetune")  # the module (the package exports the function)

    real = recipe.train_steps

    def poisoned(model, *args, **kwargs):
        for info in real(model, *args, **kwargs):
            yield info
            if info.step == 6:
                with torch.no_grad():
                    next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))

    monkeypatch.setattr(recipe, "train_steps", poisoned)
    out = tmp_path / "nan"
    cfg = load_config(CONFIG, [f"model={tiny_model_dirs['llama']}", f"output_dir={out}", "train.max_steps=20",
                               "train.batch_size=4", "train.save_every=3", "eval.max_examples=6"])
    with pytest.raises(TrainingStopped) as err:
        recipe.finetune(replace(cfg))
    message = str(err.value)
    assert "loss is nan" in message and "at step 7" in message
    assert str(out / "checkpoint-6") in message and "--resume" in message
    assert not (out / "metrics.json").exists()


def test_out_of_memory_stops_with_advice(tiny_model_dirs, tmp_path, monkeypatch):
    from tasktune.config import load_config
    from tasktune.train import TrainingStopped

    recipe = importlib.import_module("tasktune.recipes.finetune")
    real = recipe.train_steps

    def exhausted(model, *args, **kwargs):
        for info in real(model, *args, **kwargs):
            yield info
            if info.step == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(recipe, "train_steps", exhausted)
    cfg = load_config(CONFIG, [f"model={tiny_model_dirs['llama']}", f"output_dir={tmp_path / 'oom'}",
                               "train.max_steps=5", "train.batch_size=4", "eval.max_examples=6"])
    with pytest.raises(TrainingStopped) as err:
        recipe.finetune(cfg)
    message = str(err.value)
    assert "out of memory" in message and "step 3" in message
    for advice in ("train.batch_size=4", "train.grad_accum", "encoding.max_length", "gradient_checkpointing", "quantization"):
        assert advice in message, advice
