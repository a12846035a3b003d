"""`tasktune export --format gguf` and `tasktune eval --gguf` end to end on a tiny LoRA run:
the file answers through llama.cpp as the run did, with its figures written and a kind that
loses the tuning warned about; refusals are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from tasktune.generate import llama_cpp_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not llama_cpp_available(),
                       reason="llama-cpp-python is not installed (pip install 'tasktune[gguf]'; make test installs it)"),
]

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arith_lora.yaml"
tasktune = run_cli


@pytest.fixture(scope="module")
def llama_run(distinct_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny_llama"
    result = tasktune("train", str(CONFIG), f"model={distinct_llama_dir}", f"output_dir={out}", "train.max_steps=6",
                      "train.batch_size=4", "eval.max_examples=12", "generate.max_new_tokens=8", "eval.suites=[turns_1]", "eval.suite_examples=6")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def exported(llama_run, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gguf") / "export"
    result = tasktune("export", "--run", str(llama_run), "--out", str(out), "--format", "gguf", "--quant", "f32", "q8_0")
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "export.json").read_text())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # the export of every kind (the `exported` fixture): 70 s on a 2-core Zen 1
def test_each_kind_is_written_checked_through_llama_cpp_and_given_a_modelfile(llama_run, exported):
    out, report = exported
    own = _rows(llama_run / "predictions.jsonl")
    assert len({r["raw_output"] for r in own}) >= len(own) // 2  # distinct answers: the comparison can fail
    kinds = {row["kind"]: row for row in report["kinds"]}
    assert set(kinds) == {"f32", "q8_0"}
    f32 = kinds["f32"]["check"]
    assert f32["n"] == 12 and f32["prompt_tokens_as_llama_cpp"] == 12
    # The tiny random model has near-ties in its logits that summation order decides (the
    # unit tests check each difference is one); the real model: 300/300 identical (BENCHMARKS).
    assert f32["identical_answers"] >= 10 and abs(f32["lost_points"]) <= 100 / 12
    assert kinds["q8_0"]["mib"] < kinds["f32"]["mib"] / 2 and kinds["q8_0"]["tuning_kept"] > 0.9
    modelfile = (out / "tiny_llama-q8_0.Modelfile").read_text()
    assert "FROM ./tiny_llama-q8_0.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile


@pytest.mark.slow  # shares the export of every kind
def test_eval_gguf_writes_the_same_results_as_any_evaluation(llama_run, exported, tmp_path):
    out, _ = exported
    result = tasktune("eval", "--gguf", str(out / "tiny_llama-f32.gguf"), "--out", str(tmp_path / "ev"))
    assert result.returncode == 0, result.stderr
    assert "through llama.cpp: exact_match" in result.stdout
    metrics = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())
    assert metrics["final"]["n"] == 12 and "turns_1" in metrics["suites"]
    assert (tmp_path / "ev" / "report.md").is_file()
    ours, theirs = _rows(llama_run / "predictions.jsonl"), _rows(tmp_path / "ev" / "eval_predictions.jsonl")
    assert [r["input"] for r in theirs] == [r["input"] for r in ours]  # the file's template renders as the run did
    assert sum(a["raw_output"] == b["raw_output"] for a, b in zip(ours, theirs)) >= 10


def test_a_kind_that_loses_the_tuning_warns_with_the_cause(llama_run, tmp_path, monkeypatch):
    import tasktune.recipes.gguf_export as recipe

    # A file that keeps none of the tuning: what a base on the kind's own grid does to a LoRA.
    monkeypatch.setattr(recipe, "tuning_kept", lambda base, tuned, written: (0.31, 1.2))
    monkeypatch.setattr(recipe, "_check", lambda path, examples, own, budget: {
        "exact_match": 0.1, "n": 12, "run_exact_match": 0.9, "identical_answers": 0, "lost_points": 80.0})
    result = tasktune("export", "--run", str(llama_run), "--out", str(tmp_path / "o"), "--format", "gguf", "--quant", "q4_0")
    assert result.returncode == 0, result.stderr
    assert "warning: q4_0: exact match 10.0% through llama.cpp against the run's 90.0% (80.0 points lost); the file " \
           "keeps 31% of the tuning change and its rounding moves the tuned weights 1.2x as far as the tuning did" in result.stderr
    assert "warning" in json.loads((tmp_path / "o" / "export.json").read_text())["kinds"][0]


def test_refusals_are_one_clear_line(llama_run, tiny_model_dirs, tmp_path):
    result = tasktune("export", "--run", str(llama_run), "--out", str(tmp_path / "a"), "--format", "gguf", "--quant", "q3_k")
    assert result.returncode == 1 and "--quant 'q3_k': not a GGUF kind tasktune writes" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a").exists()
    glm = tmp_path / "glm_run"
    trained = tasktune("train", str(CONFIG), f"model={tiny_model_dirs['glm']}", f"output_dir={glm}", "encoding.template=chatglm",
                       "train.max_steps=1", "train.batch_size=2", "eval.max_examples=2", "eval.base=false", "eval.suites=[]")
    assert trained.returncode == 0, trained.stderr
    result = tasktune("export", "--run", str(glm), "--out", str(tmp_path / "b"), "--format", "gguf")
    assert result.returncode == 1 and "supports the llama and qwen2 architectures; this model is 'glm'" in result.stderr
    result = tasktune("eval", "--gguf", str(tmp_path / "missing.gguf"))
    assert result.returncode == 1 and "GGUF file not found" in result.stderr
