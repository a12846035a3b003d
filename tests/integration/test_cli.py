"""Drive the `tasktune` command end to end on tiny random-weight models: in this process
(:func:`conftest.run_cli`, the CLI's own logic), and as the installed console script where
the process itself is what a test is about."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli, run_process
from tasktune.data.answers import final_answer

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arith_lora.yaml"
tasktune = run_cli


@pytest.fixture(scope="module")
def llama_run(distinct_llama_dir, tmp_path_factory) -> Path:
    """A 6-step LoRA run on the tiny Llama whose greedy answers differ from prompt to
    prompt (the plain tiny Llama answers every prompt alike: comparisons could not fail)."""
    out = tmp_path_factory.mktemp("runs") / "tiny_llama"
    result = tasktune(
        "train", str(CONFIG), f"model={distinct_llama_dir}", f"output_dir={out}",
        "train.max_steps=6", "train.batch_size=4", "train.save_every=3", "eval.max_examples=12",
    )
    assert result.returncode == 0, result.stderr
    assert "base" in result.stdout and "tuned" in result.stdout
    return out


def _predictions(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len({r["prediction"] for r in rows}) >= len(rows) // 2  # distinct answers: the comparison can fail
    return rows


def test_train_writes_the_run_folder(llama_run: Path):
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "report.md", "train_log.jsonl"):
        assert (llama_run / name).is_file(), name
    assert (llama_run / "adapter" / "adapter_config.json").is_file()
    assert (llama_run / "adapter" / "adapter_model.safetensors").is_file()
    assert (llama_run / "checkpoint-3" / "adapter_model.safetensors").is_file()
    metrics = json.loads((llama_run / "metrics.json").read_text())
    figures = {"exact_match", "n", "rouge-1", "rouge-2", "rouge-l", "bleu-4", "cut_at_cap"}
    steps = {"step_accuracy", "steps_written", "all_steps_right", "first_wrong"}  # the demo's answers are worked steps
    assert set(metrics["base"]) == figures | steps and metrics["base"]["n"] == 12
    assert metrics["metric"] == "exact_match"  # arithmetic answers are checked by value
    assert metrics["final"]["n"] == 12
    assert sum(c["n"] for c in metrics["by_category"].values()) == 12
    assert metrics["train"]["steps"] == 6
    for key in ("seconds", "examples_per_second", "tokens_per_second"):
        assert metrics["train"][key] > 0
    rows = [json.loads(line) for line in (llama_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert {"prompt", "input", "prediction", "reference", "correct", "finish_reason", "category", "rouge-l", "bleu-4",
            "reference_steps", "steps", "steps_right", "first_wrong"} <= set(rows[0])
    assert "## Worked steps" in (llama_run / "report.md").read_text()
    assert metrics["final"]["cut_at_cap"] == sum(r["finish_reason"] == "length" for r in rows)
    assert rows[0]["input"].endswith("<|im_start|>assistant\n")
    # The report shows both plots, and they are real PNG files.
    report = (llama_run / "report.md").read_text()
    for png in ("loss.png", "eval.png"):
        assert f"]({png})" in report
        assert (llama_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The resolved config records the generation cap and loads back.
    from tasktune.config import load_config

    cfg = load_config(llama_run / "config.yaml")
    assert cfg.generate.max_new_tokens and cfg.train.max_steps == 6


def test_stock_peft_reproduces_the_predictions(llama_run: Path, distinct_llama_dir):
    """The adapter loads with plain PEFT and greedy decoding of the rendered inputs
    in predictions.jsonl gives the recorded predictions."""
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(distinct_llama_dir)
    base = AutoModelForCausalLM.from_pretrained(distinct_llama_dir, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(base, llama_run / "adapter").eval()
    cap = json.loads(json.dumps(__import__("yaml").safe_load((llama_run / "config.yaml").read_text())))["generate"]["max_new_tokens"]
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    rows = _predictions(llama_run)
    for row in rows[:4]:
        ids = tok(row["input"], add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=cap, do_sample=False, eos_token_id=stop, pad_token_id=stop)
        text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        assert text == row["prediction"]


def test_predict_matches_eval_predictions(llama_run: Path, tmp_path: Path):
    rows = _predictions(llama_run)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rows[:5]))
    dst = tmp_path / "out.jsonl"
    result = tasktune("predict", "--run", str(llama_run), "--input", str(src), "--output", str(dst))
    assert result.returncode == 0, result.stderr
    got = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [g["prediction"] for g in got] == [r["prediction"] for r in rows[:5]]
    assert [g["input"] for g in got] == [r["input"] for r in rows[:5]]
    assert [g["finish_reason"] for g in got] == [r["finish_reason"] for r in rows[:5]]
    assert [g["final_answer"] for g in got] == [final_answer(r["prediction"]) for r in rows[:5]]


def test_predict_on_an_int8_base(llama_run: Path, tmp_path: Path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "12+34="}\n{"prompt": "56-7="}\n')
    dst = tmp_path / "out.jsonl"
    result = tasktune("predict", "--run", str(llama_run), "--input", str(src), "--output", str(dst), "quantization=int8")
    assert result.returncode == 0, result.stderr
    assert "Failed to load" not in result.stderr  # torchao's CUDA-kernel noise is silenced
    assert len(dst.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["quantization=int4"], "quantization=int4 needs a CUDA GPU"),
        (["quantization=int8"], "training on a quantized base needs a CUDA GPU"),
        (["quantization=int8", "adapter.method=full"], "trains the base's own weights"),
    ],
)
def test_quantized_training_that_cannot_work_fails_before_loading(tiny_model_dirs, tmp_path, overrides, message):
    result = tasktune("train", str(CONFIG), f"model={tiny_model_dirs['llama']}", f"output_dir={tmp_path / 'r'}", *overrides)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "base exact_match" not in result.stdout  # nothing was loaded or evaluated


def test_eval_prints_base_and_runs_side_by_side(llama_run: Path, distinct_llama_dir, tmp_path: Path):
    other = tmp_path / "other_run"
    trained = tasktune(
        "train", str(CONFIG), f"model={distinct_llama_dir}", f"output_dir={other}",
        "train.max_steps=2", "train.batch_size=4", "eval.max_examples=12", "eval.base=false",
    )
    assert trained.returncode == 0, trained.stderr
    (llama_run / "report.md").unlink()
    (llama_run / "eval.png").unlink()
    result = tasktune("eval", "--run", str(llama_run), "--run", str(other))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header == ["base", "tiny_llama", "other_run"]  # one base: both runs tune the same model
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line and not line.startswith("(")}
    assert len(rows["exact_match*"]) == 3 and all(v.endswith("%") for v in rows["exact_match*"])
    assert len(rows["rouge-l"]) == 3 and len(rows["bleu-4"]) == 3
    assert any(line.startswith("add_int_") for line in lines)  # per category
    for run in (llama_run, other):
        saved = json.loads((run / "eval_metrics.json").read_text())
        assert saved["final"]["n"] == 12 and "base" in saved
        assert (run / "eval_predictions.jsonl").is_file()
    # The tuned column equals what the run itself measured: greedy decoding reproduces.
    trained_metrics = json.loads((llama_run / "metrics.json").read_text())
    assert json.loads((llama_run / "eval_metrics.json").read_text())["final"]["exact_match"] == trained_metrics["final"]["exact_match"]
    again = [json.loads(line)["prediction"] for line in (llama_run / "eval_predictions.jsonl").read_text().splitlines()]
    assert again == [r["prediction"] for r in _predictions(llama_run)]
    # eval rewrites the report, plots included.
    assert "](eval.png)" in (llama_run / "report.md").read_text() and (llama_run / "eval.png").is_file()


def test_stop_at_ends_training_once_the_held_out_target_is_met(tiny_model_dirs, tmp_path: Path):
    # One fact to learn: a tiny random model gets it right within a few dozen steps. Full
    # fine-tuning, because the answer must end with the stop token (an answer the cap cut
    # off is not credited): in these tiny models that token is the padding row of the tied
    # embedding, all zeros, which LoRA cannot move.
    data = tmp_path / "seven.jsonl"
    data.write_text("".join(json.dumps({"instruction": "Say seven", "output": "7"}) + "\n" for _ in range(20)))
    out = tmp_path / "run"
    result = tasktune(
        "train", str(CONFIG), f"model={tiny_model_dirs['llama']}", f"output_dir={out}", "data.task=file",
        f"data.file.path={data}", "eval.max_examples=4", "eval.every=4", "train.stop_at=1.0",
        "train.max_steps=200", "train.batch_size=4", "train.lr=3e-3", "train.schedule=constant", "train.warmup_steps=0",
        "adapter.method=full",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    evals = metrics["evals"]
    assert metrics["train"]["stopped_at_target"] is True
    assert [e["step"] for e in evals] == list(range(4, metrics["train"]["steps"] + 1, 4))
    assert metrics["train"]["steps"] < 200 and evals[-1]["exact_match"] == 1.0
    assert all(e["exact_match"] < 1.0 for e in evals[:-1])  # it stopped at the first hit
    assert metrics["best"]["step"] == evals[-1]["step"] and metrics["final"]["exact_match"] == 1.0
    assert (out / "checkpoint-best" / "adapter_model.safetensors").is_file()
    assert f"train.stop_at=1.0 reached at step {evals[-1]['step']}" in result.stderr + result.stdout
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval_exact_match" in r] == [e["step"] for e in evals]
    assert "## Evaluations during training" in (out / "report.md").read_text()
    assert "Training stopped at step" in (out / "report.md").read_text()


def test_glm_without_template_trains_with_the_chatglm_template(tiny_model_dirs, tmp_path: Path):
    out = tmp_path / "glm"
    result = tasktune(
        "train", str(CONFIG), f"model={tiny_model_dirs['glm']}", "encoding.template=chatglm",
        f"output_dir={out}", "train.max_steps=2", "train.batch_size=2", "eval.max_examples=4",
    )
    assert result.returncode == 0, result.stderr
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert row["input"].startswith("[Round 0]\n问：") and row["input"].endswith("\n答：")


def test_glm_without_template_says_what_to_set(tiny_model_dirs, tmp_path: Path):
    result = tasktune(
        "train", str(CONFIG), f"model={tiny_model_dirs['glm']}", "encoding.template=null", f"output_dir={tmp_path}"
    )
    assert result.returncode == 1
    assert "encoding.template" in result.stderr and "Traceback" not in result.stderr


def test_malformed_data_file_names_file_and_row(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"instruction": "1+1=", "output": "2"}\n'
        '{"instruction": "2+2="}\n'
        "{not json\n"
        '{"instruction": "3+3=", "output": 6}\n',
        encoding="utf-8",
    )
    result = tasktune("data", "check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2: missing \"output\"" in result.stderr
    assert f"{bad}:3: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.json"
    good.write_text('\ufeff[{"instruction": "1+1=", "input": "", "output": "2"}]\r\n', encoding="utf-8")
    result = tasktune("data", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert "1 rows" in result.stdout


def test_training_on_a_malformed_file_stops_before_loading(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "a", "output": "b"}, {"instruction": 5, "output": "c"}]')
    result = tasktune("train", str(CONFIG), "data.task=file", f"data.file.path={bad}", f"output_dir={tmp_path / 'r'}")
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr and "Traceback" not in result.stderr


def test_config_errors_are_listed_at_once_with_did_you_mean(tmp_path: Path):
    result = tasktune("train", str(CONFIG), "train.max_step=5", "train.lr=abc", f"output_dir={tmp_path}")
    assert result.returncode == 1
    assert "did you mean" in result.stderr and "max_steps" in result.stderr
    assert "train.lr" in result.stderr
    assert "Traceback" not in result.stderr


def test_overrides_after_a_flag_are_taken_and_stray_flags_refused(tmp_path: Path):
    """`train CONFIG --overwrite key=value` is how people type it: the override after the
    flag must reach the config (here it is checked, and refused for its value)."""
    result = tasktune("train", str(CONFIG), "--overwrite", "train.max_steps=0", f"output_dir={tmp_path}")
    assert result.returncode == 1
    assert "train.max_steps" in result.stderr and "Traceback" not in result.stderr
    result = tasktune("train", str(CONFIG), "--overwrite", "--bogus", f"output_dir={tmp_path}")
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr


def test_missing_config_file(tmp_path: Path):
    """Through the installed console script: its exit code and message as a shell sees them."""
    result = run_process("train", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_reversed_answers_are_restored_for_people(tiny_model_dirs, tmp_path: Path):
    """A run trained on reversed digits shows normal values in predictions and predict."""
    from tasktune.data.arithmetic import reverse_digits

    out = tmp_path / "rev"
    result = tasktune(
        "train", str(CONFIG), f"model={tiny_model_dirs['llama']}", f"output_dir={out}",
        "data.arithmetic.answer_format=reversed", "train.max_steps=2", "train.batch_size=2", "eval.max_examples=4",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["prediction"] == reverse_digits(r["raw_output"]) for r in rows)
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rows))
    assert tasktune("predict", "--run", str(out), "--input", str(src), "--output", str(dst)).returncode == 0
    got = [json.loads(line)["prediction"] for line in dst.read_text().splitlines()]
    assert got == [r["prediction"] for r in rows]


def test_a_rouge_scale_stop_at_on_an_exact_match_task_is_refused(tiny_model_dirs, tmp_path: Path):
    result = tasktune("train", str(CONFIG), f"model={tiny_model_dirs['llama']}", f"output_dir={tmp_path / 'r'}",
                      "train.stop_at=40", "eval.every=2", "train.max_steps=4", "eval.max_examples=4")
    assert result.returncode == 1
    assert "eval.metric is exact_match" in result.stderr and "Traceback" not in result.stderr
    assert "base exact_match" not in result.stdout  # refused before the model loads


def test_export_merges_lora_and_reproduces_the_runs_predictions_with_transformers_alone(llama_run: Path, tmp_path: Path):
    _predictions(llama_run)
    from tasktune.config import load_config

    cap = load_config(llama_run / "config.yaml").generate.max_new_tokens
    out = tmp_path / "exported"
    result = tasktune("export", "--run", str(llama_run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json"} <= {f.name for f in out.iterdir()}
    assert not (out / "adapter_config.json").exists()  # plain weights, no PEFT
    # A fresh interpreter with transformers only (tasktune and peft blocked from import).
    script = f"""
import json, sys
sys.modules["tasktune"] = None; sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(out)!r})
model = AutoModelForCausalLM.from_pretrained({str(out)!r}, dtype=torch.float32).eval()
rows = [json.loads(line) for line in open({str(llama_run / "predictions.jsonl")!r})]
same = 0
for row in rows:
    chat = tok.apply_chat_template([{{"role": "user", "content": row["prompt"]}}], tokenize=False, add_generation_prompt=True)
    assert chat == row["input"], (chat, row["input"])  # the run's own rendering
    ids = tok(row["input"], add_special_tokens=False, return_tensors="pt")
    new = model.generate(**ids, max_new_tokens={cap}, do_sample=False)[0, ids["input_ids"].shape[1]:]
    same += tok.decode(new, skip_special_tokens=True).strip() == row["prediction"]
print(same, len(rows))
"""
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    same, total = map(int, check.stdout.split())
    assert same == total == 12


def test_export_refuses_a_prefix_run_and_a_used_folder(tiny_model_dirs, tmp_path: Path, llama_run: Path):
    run = tmp_path / "prefix_run"
    trained = tasktune("train", str(CONFIG), f"model={tiny_model_dirs['llama']}", f"output_dir={run}", "adapter.method=prefix",
                       "train.max_steps=1", "train.batch_size=2", "eval.max_examples=2", "eval.base=false")
    assert trained.returncode == 0, trained.stderr
    result = tasktune("export", "--run", str(run), "--out", str(tmp_path / "x"))
    assert result.returncode == 1 and "cannot be merged into plain weights" in result.stderr and "Traceback" not in result.stderr
    result = tasktune("export", "--run", str(run), "--out", str(tmp_path / "g"), "--format", "gguf")
    assert result.returncode == 1 and "cannot be merged into plain weights" in result.stderr and "Traceback" not in result.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    result = tasktune("export", "--run", str(llama_run), "--out", str(used))
    assert result.returncode == 1 and "not empty" in result.stderr


def test_export_of_a_freeze_run_holds_its_trained_weights(tiny_model_dirs, tmp_path: Path):
    run = tmp_path / "freeze_run"
    trained = tasktune("train", str(CONFIG), f"model={tiny_model_dirs['qwen2']}", f"output_dir={run}", "adapter.method=freeze",
                       "adapter.freeze.layers=1", "train.max_steps=2", "train.batch_size=2", "train.lr=1e-2",
                       "eval.max_examples=2", "eval.base=false")
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "exported"
    assert tasktune("export", "--run", str(run), "--out", str(out)).returncode == 0
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert saved and all(".layers.1." in name for name in saved)  # the last block's weights were trained
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["qwen2"], dtype=torch.float32).state_dict()
    for name, tensor in saved.items():
        key = next(k for k in exported if k.endswith(name.split("model.", 1)[-1]))
        assert torch.equal(exported[key], tensor.float()), name
        assert not torch.equal(base[key], tensor.float()), name
