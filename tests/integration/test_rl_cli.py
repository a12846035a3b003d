"""The RL stage through the CLI on the tiny models: GRPO and rejection sampling from an SFT
run, kill -9 and --resume giving the uninterrupted run's steps, and one line for each
start or reward it cannot take."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TASKTUNE
from test_cli import CONFIG, tasktune

pytestmark = pytest.mark.integration

# A reward with spread for a random model: completions of even character length (whose
# worked steps are never right: rejection sampling keeps them by the reward alone).
REWARD = "def score(prompt, completion, reference, answer):\n    return float(len(completion) % 2 == 0)\n"
STEPS = 8


@pytest.fixture(scope="module")
def sft_run(distinct_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rl") / "sft"
    result = tasktune("train", str(CONFIG), f"model={distinct_llama_dir}", f"output_dir={out}", "train.max_steps=4",
                      "train.batch_size=4", "eval.max_examples=8", "eval.suites=[]")
    assert result.returncode == 0, result.stderr
    return out


def _rl_args(model: Path, start: Path | None, out: Path, objective: str, *more: str) -> list[str]:
    return ["train", str(CONFIG), f"model={model}", f"output_dir={out}", f"train.init_from={start or 'null'}",
            f"train.objective={objective}", "train.max_steps=6", "train.batch_size=8", "train.grad_accum=2",
            "train.lr=5e-3", "train.warmup_steps=0", "train.packing=false", "rl.num_generations=4",
            "rl.max_completion_length=12", "rl.mask_truncated_completions=false", "rl.reward=tiny_rewards:score",
            "rl.rft_all_steps=false", "eval.max_examples=8", "eval.suites=[]", "train.log_every=1", *more]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith(("seconds", "examples_per_second"))} for r in rows]


@pytest.mark.parametrize("objective", ["grpo", "rft"])
def test_the_rl_stage_trains_from_an_sft_run(objective, sft_run, distinct_llama_dir, tmp_path):
    (tmp_path / "tiny_rewards.py").write_text(REWARD)
    out = tmp_path / objective
    result = tasktune(*_rl_args(distinct_llama_dir, sft_run, out, objective), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"start ({sft_run}) exact_match" in result.stdout
    rows = _log(out)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for r in rows:
        assert 0 < r["reward_mean"] < 1 and r["completion_length"] <= 12 and r["reward_by_category"]
    assert sum(r["trained" if objective == "grpo" else "kept"] for r in rows) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    start = json.loads((sft_run / "metrics.json").read_text())
    assert metrics["start_from"] == str(sft_run) and metrics["base"]["exact_match"] == start["final"]["exact_match"]
    report = (out / "report.md").read_text()
    assert "## Sampled completions (the RL stage)" in report and f"| starts from | {sft_run} |" in report
    assert "| figure | start | tuned |" in report
    # The adapter moved from where it started, and stays in PEFT's format.
    from safetensors.torch import load_file

    before, after = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (sft_run, out))
    assert before.keys() == after.keys() and any(not (before[k] == after[k]).all() for k in before)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"


@pytest.mark.parametrize("objective", ["grpo", "rft"])
def test_kill_9_then_resume_gives_the_uninterrupted_steps(objective, sft_run, distinct_llama_dir, tmp_path):
    (tmp_path / "tiny_rewards.py").write_text(REWARD)
    args = _rl_args(distinct_llama_dir, sft_run, tmp_path / "whole", objective, f"train.max_steps={STEPS}",
                    "train.save_every=2", "rl.category_weights=errors")
    whole = tasktune(*args, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    killed = [a if not a.startswith("output_dir=") else f"output_dir={out}" for a in args]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([TASKTUNE, *killed], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists() or len(_lines(out)) < 4:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it was killed; kill it sooner"
    resumed = tasktune(*killed, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert _untimed(_log(out)) == _untimed(_log(tmp_path / "whole"))  # rewards, losses, every step
    assert len(_log(out)) == STEPS


def _prefix_run(model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "prefix"
    result = tasktune("train", str(CONFIG), f"model={model}", f"output_dir={out}", "adapter.method=prefix",
                      "train.max_steps=1", "train.batch_size=2", "eval.max_examples=2", "eval.suites=[]", "eval.base=false")
    assert result.returncode == 0, result.stderr
    return out


def _lines(run: Path) -> list[str]:
    path = run / "train_log.jsonl"
    return path.read_text().splitlines()[:-1] if path.is_file() else []


def test_starts_and_rewards_it_cannot_take_are_refused_in_one_line(sft_run, distinct_llama_dir, tiny_model_dirs, tmp_path):
    def refused(*more: str, start: Path | None = sft_run, model: Path = distinct_llama_dir) -> str:
        result = tasktune(*_rl_args(model, start, tmp_path / "out", "grpo", *more), cwd=tmp_path)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert not (tmp_path / "out" / "metrics.json").exists()
        return result.stderr

    assert "not a tasktune run folder" in refused(start=tmp_path / "nowhere")
    assert "was trained on model" in refused(model=tiny_model_dirs["qwen2"])
    assert "adapter.method=prefix is not supported by the RL stage" in refused("adapter.method=prefix")
    assert "is a lora run, this config trains freeze" in refused("adapter.method=freeze")
    assert "a prefix run cannot be continued yet" in refused("adapter.method=prefix", "train.objective=sft",
                                                             start=_prefix_run(distinct_llama_dir, tmp_path))
    assert "the adapter's settings differ" in refused("adapter.lora.r=8")
    assert "cannot import 'absent_rewards:score'" in refused("rl.reward=absent_rewards:score")
    assert "rl.step_credit: steps are credited against the verifier's reward" in refused("rl.step_credit=true", "rl.reward=random")
    assert "must be a multiple of rl.num_generations" in refused("rl.num_generations=3")
    assert "with 1 every advantage is 0" in refused("rl.num_generations=1", "rl.step_credit=false")
    assert "set train.init_from (or rl.beta=0)" in refused("rl.beta=0.1", start=None)
    assert "is this run's own output_dir" in refused(f"output_dir={sft_run}", "--overwrite")
    assert (sft_run / "metrics.json").is_file()  # --overwrite did not touch the run it would start from
