"""The GGUF export: llama.cpp and transformers read back what was written (the same
tensors, the same token ids, the same greedy answers as the model in torch); refusals
name what is supported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_distinct
from tasktune.checkpoint.gguf import GgufMeta, gguf_tensors, write_gguf
from tasktune.checkpoint.gguf_read import read_tensors, tuning_kept
from tasktune.encoding.templates import CHATGLM, CHATML, go_template
from tasktune.generate import llama_cpp_available

needs_llama_cpp = pytest.mark.skipif(not llama_cpp_available(),
                                     reason="llama-cpp-python is not installed (pip install 'tasktune[gguf]'; make test installs it)")

PROMPTS = ["3+4=", "12-7=", "55+23=", "9*9=", "100-1=", "7+70=", "计算 8+5", "  spaced  out  "]


def _meta(stop_id: int = 2) -> GgufMeta:
    return GgufMeta(name="tiny", chat_template=None, stop_id=stop_id, run_config="seed: 0\n")


def _rendered(tokenizer) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in PROMPTS]


def _greedy_torch(model, ids: list[list[int]], n: int) -> list[list[int]]:
    out = []
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            new = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                                 eos_token_id=2, pad_token_id=2)
            out.append(new[0, len(row):].tolist())
    return out


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def written(request, tiny_model_dirs, tokenizer, tmp_path_factory):
    """(model, path of its f32 GGUF file): the tiny model with weights whose greedy answers
    differ from prompt to prompt."""
    model = load_distinct(tiny_model_dirs[request.param]).eval()
    path = tmp_path_factory.mktemp("gguf") / f"{request.param}-f32.gguf"
    write_gguf(model, tokenizer, _meta(), path, "f32")
    return model, path


def test_transformers_reads_back_the_same_tensors(written):
    from transformers import AutoModelForCausalLM

    model, path = written
    back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).state_dict()
    ours = model.state_dict()
    assert set(back) == set(ours)
    for name, tensor in ours.items():
        assert torch.equal(back[name], tensor), name  # q/k permuted and back, exactly


@needs_llama_cpp
def test_llama_cpp_tokenizes_and_answers_as_the_model_in_torch(written, tokenizer):
    from tasktune.generate import GgufModel

    model, path = written
    gguf = GgufModel(path)
    texts = _rendered(tokenizer)
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    assert [gguf.tokenize(t) for t in texts] == ids  # <|im_start|> parsed as one control token
    assert gguf.metadata("tasktune.config") == "seed: 0\n"
    assert gguf.metadata("tokenizer.ggml.eos_token_id") == "2"
    ours = _greedy_torch(model, ids, 10)
    assert len({tuple(o) for o in ours}) == len(ours)  # distinct answers: the comparison can fail
    theirs = gguf.greedy(ids, 2, [10] * len(ids), batch_size=3)  # continuous batching, 3 rows at a time
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        gguf.greedy([ids[0], []], 2, [4, 4])
    gguf.close()
    assert sum(a == b for a, b in zip(theirs, ours)) >= len(ours) - 1
    for prompt, a, b in zip(ids, theirs, ours):
        _same_or_a_near_tie(model, prompt, a, b)


def _same_or_a_near_tie(model, prompt: list[int], theirs: list[int], ours: list[int]) -> None:
    """Greedy answers agree, or first part where torch's own logits for the two tokens are
    within 1e-3 (the random tiny model has such ties; summation order decides them)."""
    if theirs == ours:
        return
    k = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ours[:k]])).logits[0, -1]
    assert float(logits[ours[k]] - logits[theirs[k]]) < 1e-3, (k, theirs, ours)


@needs_llama_cpp
def test_the_file_renders_prompts_with_its_own_template_as_the_binding_does(written, tokenizer):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from tasktune.generate import GgufModel

    _, path = written
    gguf = GgufModel(path)
    formatter = Jinja2ChatFormatter(gguf.metadata("tokenizer.chat_template"), "<|im_end|>", "<|im_start|>")
    for prompt, text in zip(PROMPTS, _rendered(tokenizer)):
        assert formatter(messages=[{"role": "user", "content": prompt}]).prompt == text
    gguf.close()


def test_quantized_kinds_stay_close_and_keep_the_tuning(written, tokenizer, tmp_path):
    model, path = written
    if model.config.model_type != "llama":
        pytest.skip("one architecture is enough here: the kinds quantize tensors alike (saves 15 s)")
    tuned = gguf_tensors(model)  # the f32 file holds these exactly (transformers reads them back, above)
    base = {k: v + np.float32(0.05) * np.sign(v) for k, v in tuned.items()}  # a base the "tuning" moved from
    for kind, tolerance in (("f16", 1e-3), ("q8_0", 2e-2)):
        write_gguf(model, tokenizer, _meta(), tmp_path / f"{kind}.gguf", kind, tuned)
        back = read_tensors(tmp_path / f"{kind}.gguf")
        worst = max(float(np.abs(back[k] - tuned[k]).max() / (np.abs(tuned[k]).max() + 1e-12)) for k in tuned)
        assert worst < tolerance, kind
        kept, moved = tuning_kept(base, tuned, back)
        assert kept == pytest.approx(1.0, abs=0.05) and moved < 0.5


def test_tuning_kept_is_the_share_of_the_change_a_file_holds():
    rng = np.random.default_rng(0)
    base = {"a": rng.standard_normal((4, 8)).astype(np.float32), "b": np.ones(3, np.float32)}
    change = {"a": rng.standard_normal((4, 8)).astype(np.float32), "b": np.zeros(3, np.float32)}
    tuned = {k: base[k] + change[k] for k in base}
    assert tuning_kept(base, tuned, tuned) == pytest.approx((1.0, 0.0))
    assert tuning_kept(base, tuned, base) == pytest.approx((0.0, 1.0))  # snapped back: moved by the whole change
    half = {k: base[k] + 0.5 * change[k] for k in base}
    assert tuning_kept(base, tuned, half) == pytest.approx((0.5, 0.5))


@needs_llama_cpp
def test_k_quants_go_through_llama_cpps_quantizer(tiny_model_dirs, tokenizer, tmp_path):
    from tasktune.checkpoint.gguf_read import type_counts
    from tasktune.generate import GgufModel

    model = load_distinct(tiny_model_dirs["llama"]).eval()
    path = write_gguf(model, tokenizer, _meta(), tmp_path / "q4_k_m.gguf", "q4_k_m")
    assert [f.name for f in tmp_path.iterdir()] == ["q4_k_m.gguf"]  # the float32 source is gone
    gguf = GgufModel(path)
    assert len(gguf.greedy([tokenizer(_rendered(tokenizer)[0], add_special_tokens=False).input_ids], 2, [4])[0]) >= 1
    gguf.close()
    # 32- and 64-wide rows are no multiple of 256: llama.cpp falls back on 32-blocks for them,
    # as it does for SmolLM2's 576 (transformers reads such a file: BENCHMARKS, issue #30).
    assert "Q5_0" in type_counts(path) and "F32" not in type_counts(path)


def test_unknown_kind_and_unsupported_architecture_are_one_clear_line(tiny_model_dirs, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    with pytest.raises(ValueError, match=r"--quant 'q3': not a GGUF kind tasktune writes; choose from f32, f16"):
        write_gguf(llama, tokenizer, _meta(), tmp_path / "x.gguf", "q3")
    glm = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["glm"])
    with pytest.raises(ValueError, match=r"supports the llama and qwen2 architectures; this model is 'glm'.*--format hf"):
        write_gguf(glm, tokenizer, _meta(), tmp_path / "y.gguf", "f16")
    assert not (tmp_path / "y.gguf").exists()


def test_an_unknown_pre_tokenizer_is_refused(tiny_model_dirs, tokenizer, tmp_path, monkeypatch):
    import tasktune.checkpoint.gguf as g
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(g, "_PRE_TOKENIZERS", {})
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    with pytest.raises(ValueError, match="pre-tokenizer is not one tasktune knows"):
        write_gguf(llama, tokenizer, _meta(), tmp_path / "x.gguf", "f32")


def _render(tokenizer, template):
    return lambda msgs, gen: tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                                          add_generation_prompt=gen)


def _go(template: str, system: str | None, messages: list[tuple[str, str]]) -> str:
    """What Ollama's Go template renders, for the only constructs go_template writes."""
    import re

    head, loop = template.split("{{ range .Messages }}")
    sys_part = re.match(r"\{\{ if \.System \}\}(.*)\{\{ \.System \}\}(.*)\{\{ else \}\}(.*)\{\{ end \}\}$", head, re.S)
    user = re.match(r'\{\{ if eq \.Role "user" \}\}(.*)\{\{ \.Content \}\}(.*)\{\{ else if eq \.Role "assistant" \}\}'
                    r"\{\{ \.Content \}\}(.*)\{\{ end \}\}\{\{ end \}\}$", loop, re.S)
    out = sys_part[1] + system + sys_part[2] if system else sys_part[3]
    for role, content in messages:
        out += user[1] + content + user[2] if role == "user" else content + user[3]
    return out


@pytest.mark.parametrize("template", [CHATML, None], ids=["chatml", "smollm2-own"])
def test_the_modelfile_template_renders_as_the_run_does(tokenizer, template):
    go = go_template(_render(tokenizer, template))
    assert go is not None and "{{-" not in go  # no trim marks: the template's newlines are kept
    turns = [("user", "1+2="), ("assistant", "3"), ("user", "4+5=")]
    msgs = [{"role": r, "content": c} for r, c in turns]
    for system in (None, "Answer briefly."):
        full = ([{"role": "system", "content": system}] if system else []) + msgs
        assert _go(go, system, turns) == _render(tokenizer, template)(full, True)


def test_a_template_that_rewrites_its_turns_gets_no_modelfile_template(tokenizer):
    assert go_template(_render(tokenizer, CHATGLM)) is None  # its round counter is not a per-turn piece


def test_a_k_quant_without_llama_cpp_says_how_to_get_it(tiny_model_dirs, tokenizer, tmp_path, monkeypatch):
    import tasktune.checkpoint.gguf as g
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(g, "llama_cpp_available", lambda: False)
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    with pytest.raises(ValueError, match=r"--quant q4_k_m: K-quants are made by llama.cpp's own quantizer.*pip install "
                                         r"'tasktune\[gguf\]'.*or choose f32, f16, q8_0"):
        write_gguf(llama, tokenizer, _meta(), tmp_path / "x.gguf", "q4_k_m")
    assert list(tmp_path.iterdir()) == []
