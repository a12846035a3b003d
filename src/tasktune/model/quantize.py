"""Quantized bases: what works where, checked before anything loads.

| quantization | CUDA (bitsandbytes)                              | CPU (torchao)                  |
| ------------ | ------------------------------------------------ | ------------------------------ |
| int8         | LLM.int8 weights: inference, LoRA/prefix training | int8 weight-only: inference    |
| int4         | NF4 + double quantization: inference, QLoRA       | not available (needs CUDA)     |

Only the linear layers inside the blocks are quantized; the embeddings and the output
head keep the model's dtype (as ChatGLM-6B's own quantization does). Methods that
train the base's own weights (freeze, full) cannot train on a quantized base.
"""

from __future__ import annotations

import importlib.util

import torch

__all__ = ["QUANTIZATION_MODES", "check_quantization", "bnb_config", "quantize_cpu"]

QUANTIZATION_MODES = ("none", "int8", "int4")


def check_quantization(mode: str, device: torch.device, training: bool, trains_base: bool = False) -> None:
    """Raise, before any weights load, when ``mode`` cannot run as asked.

    Args:
        mode: none, int8 or int4.
        device: Where the model will run.
        training: Whether the base will be trained through (an adapter on top).
        trains_base: Whether the method updates the base's own weights (freeze, full).

    Raises:
        ValueError: the combination cannot work, with what to do instead.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"quantization: {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
    if mode == "none":
        return
    if training and trains_base:
        raise ValueError(
            f"quantization={mode}: this method trains the base's own weights, which cannot be quantized; "
            "use adapter.method lora or prefix on a quantized base, or quantization=none"
        )
    if device.type == "cuda":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"quantization={mode} on CUDA needs bitsandbytes: pip install bitsandbytes")
        return
    if mode == "int4":
        raise ValueError(
            "quantization=int4 needs a CUDA GPU (bitsandbytes NF4); on the CPU use quantization=int8 "
            "(inference) or none"
        )
    if training:
        raise ValueError(
            "quantization=int8 on the CPU serves eval, predict and chat (torchao int8 weight-only); "
            "training on a quantized base needs a CUDA GPU (bitsandbytes). Train with quantization=none"
        )
    if importlib.util.find_spec("torchao") is None:
        raise ValueError("quantization=int8 on the CPU needs torchao: pip install torchao")


def bnb_config(mode: str, compute_dtype: torch.dtype):
    """The ``transformers.BitsAndBytesConfig`` for ``mode`` (int8: LLM.int8; int4: NF4
    with double quantization, computing in ``compute_dtype``), skipping the output head."""
    from transformers import BitsAndBytesConfig

    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=["lm_head"],
    )


def quantize_cpu(model, mode: str):
    """Quantize the block linear layers of ``model`` in place (CPU int8 weight-only).

    Returns:
        ``model``.
    """
    import warnings

    with warnings.catch_warnings():  # (its logged noise is silenced in tasktune/__init__)
        warnings.simplefilter("ignore")
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

    head = model.get_output_embeddings()

    def in_blocks(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module is not head

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=in_blocks)
    return model
