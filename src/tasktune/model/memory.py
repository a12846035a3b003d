"""Memory needed to run or tune a model, from its config alone: the tutorial's table.

The formula (GiB = 2**30 bytes):

    weights    = quantized block linears x bytes per weight + everything else x 2
                 (FP16: 2; INT8: 1; INT4: 0.5 + 4 bytes of scale and zero per 64
                 weights; embeddings, norms and the output head stay 16-bit)
    inference  = weights + KV cache (2 x layers x batch x tokens x kv width x 2)
                 + one layer's transient activations while reading the prompt
                   (batch x tokens x (2 x ffn width + heads x tokens) x 2) + overhead
    tuning     = weights + 16 bytes per trainable parameter (fp32 master copy, gradient,
                 two Adam moments) + stored activations
                   (batch x tokens x layers x (34 x hidden + 5 x heads x attended) bytes,
                   Korthikanti et al. 2022, 16-bit, no recomputation) + overhead

``overhead`` is what the runtime holds beyond tensors: on CUDA the context, cuBLAS
workspace and allocator slack (1.25 GiB here); on a CPU the interpreter with torch and
transformers imported (measured by ``tasktune memory``). Parameter-efficient tuning is
P-Tuning v2 as in the ChatGLM-6B tutorial (``pre_seq_len`` virtual tokens in every
layer, which every token also attends to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ParamCounts", "count_parameters", "estimate_gib", "CUDA_OVERHEAD_GIB", "BYTES_PER_WEIGHT"]

GIB = 2**30
CUDA_OVERHEAD_GIB = 1.25
"""CUDA context, cuBLAS workspace and caching-allocator slack (typically 0.8-1.5 GiB)."""
BYTES_PER_WEIGHT = {"fp16": 2.0, "int8": 1.0, "int4": 0.5 + 4 / 64}
"""Bytes per quantized block-linear weight, scales included."""


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts and the shape figures the formula needs."""

    block_linear: int
    """Weights of the linear layers inside the decoder blocks (what quantization shrinks)."""
    other: int
    """Everything else: embeddings, norms, biases, an untied output head."""
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_width: int
    """Key (or value) width per token per layer: key/value heads x head width."""

    @property
    def total(self) -> int:
        return self.block_linear + self.other


def count_parameters(config) -> ParamCounts:
    """Count parameters of a ``transformers`` config without allocating them (meta device)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    seen: set[int] = set()
    linear = other = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue  # tied tensors once
            seen.add(id(p))
            in_blocks = isinstance(module, torch.nn.Linear) and module is not head and p.dim() == 2
            linear += p.numel() if in_blocks else 0
            other += 0 if in_blocks else p.numel()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return ParamCounts(
        block_linear=linear,
        other=other,
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        ffn=config.intermediate_size,
        heads=heads,
        kv_width=kv_heads * head_dim,
    )


def estimate_gib(
    counts: ParamCounts,
    weights: str,
    mode: str,
    batch: int,
    tokens: int,
    overhead_gib: float,
    pre_seq_len: int = 128,
) -> float:
    """Memory in GiB by the formula in the module doc.

    Args:
        counts: From :func:`count_parameters`.
        weights: fp16, int8 or int4.
        mode: inference or tuning.
        batch: Sequences at once.
        tokens: Tokens per sequence (inference: prompt plus answer; tuning: the
            training length).
        overhead_gib: Runtime memory beyond tensors.
        pre_seq_len: P-Tuning v2 virtual tokens (tuning only).
    """
    c = counts
    total = c.block_linear * BYTES_PER_WEIGHT[weights] + c.other * 2
    if mode == "inference":
        total += 2 * c.layers * batch * tokens * c.kv_width * 2
        total += batch * tokens * (2 * c.ffn + c.heads * tokens) * 2
    elif mode == "tuning":
        trainable = pre_seq_len * c.layers * 2 * c.kv_width
        attended = tokens + pre_seq_len
        total += 16 * trainable
        total += batch * tokens * c.layers * (34 * c.hidden + 5 * c.heads * attended)
    else:
        raise ValueError(f"mode: inference or tuning, got {mode!r}")
    return total / GIB + overhead_gib
