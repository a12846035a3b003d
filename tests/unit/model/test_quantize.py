"""tasktune.model.quantize: what can run where fails early; CPU int8 really quantizes and
generates as the full-precision model does, batched as unbatched."""

from __future__ import annotations

import pytest
import torch
from conftest import load_distinct, template_for

from tasktune.config import load_config
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder, pad_left
from tasktune.generate import generate_batch
from tasktune.model import check_quantization
from tasktune.model.quantize import quantize_cpu

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def test_combinations_that_cannot_work_fail_before_loading():
    check_quantization("none", CPU, training=True, trains_base=True)
    check_quantization("int8", CPU, training=False)
    with pytest.raises(ValueError, match=r"quantization=int4 needs a CUDA GPU .*quantization=int8"):
        check_quantization("int4", CPU, training=False)
    with pytest.raises(ValueError, match=r"training on a quantized base needs a CUDA GPU.*quantization=none"):
        check_quantization("int8", CPU, training=True)
    for mode in ("int8", "int4"):
        with pytest.raises(ValueError, match=r"trains the base's own weights.*lora or prefix"):
            check_quantization(mode, CUDA, training=True, trains_base=True)
    with pytest.raises(ValueError, match="not one of none, int8, int4"):
        check_quantization("int3", CPU, training=False)
    assert load_config(None, ["quantization=int8"]).quantization == "int8"


def test_cpu_int8_quantizes_the_block_linears_and_generation_stays_consistent(tiny_model_dirs, tokenizer):
    full = load_distinct(tiny_model_dirs["glm4"]).eval()
    quant = quantize_cpu(load_distinct(tiny_model_dirs["glm4"]), "int8").eval()  # the same seeded weights
    kinds = {name: type(m.weight).__name__ for name, m in quant.named_modules() if isinstance(m, torch.nn.Linear)}
    head = next(n for n, m in quant.named_modules() if m is quant.get_output_embeddings())
    assert kinds.pop(head) == "Parameter"  # the output head keeps its dtype
    assert kinds and all(k != "Parameter" and "Tensor" in k for k in kinds.values()), kinds

    encoder = ChatEncoder(tokenizer, template=template_for("glm4"))
    prompts = [encoder.prompt_ids(Example(prompt=p, response="")) for p in ("1+1=", "98+83=", "12345-678=", "x", "口算: 7*6= 解:")]
    batch = pad_left(prompts, tokenizer.pad_token_id)
    with torch.no_grad():
        ref, got = full(**batch).logits, quant(**batch).logits
    rel = float((got - ref).norm() / ref.norm())
    assert 0 < rel < 0.05  # quantized (not identical), and close
    batched = generate_batch(quant, tokenizer, prompts, encoder.stop_id, 6, batch_size=8)
    single = [generate_batch(quant, tokenizer, [p], encoder.stop_id, 6)[0] for p in prompts]
    assert len(set(batched)) >= 3 and batched == single
