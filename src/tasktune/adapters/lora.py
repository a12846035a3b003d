"""LoRA through PEFT: low-rank updates on the chosen linear layers, base frozen."""

from __future__ import annotations

from pathlib import Path

from tasktune.config import AdapterConfig

__all__ = ["apply", "param_groups", "save", "load"]


def apply(model, cfg: AdapterConfig):
    """Wrap ``model`` in a PEFT LoRA model; only the LoRA matrices train.

    Returns:
        The ``peft.PeftModel``.
    """
    import peft

    lora = cfg.lora
    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def param_groups(model, cfg: AdapterConfig) -> list[dict]:
    """Optimizer groups with an ``lr_scale`` each: LoRA+ (``b_lr_ratio``) trains the B
    matrices faster than the A matrices; every other trainable tensor keeps scale 1."""
    b, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (b if "lora_B" in name else rest).append(p)
    groups = [{"params": rest, "lr_scale": 1.0}]
    if b:
        groups.append({"params": b, "lr_scale": cfg.lora.b_lr_ratio})
    return groups


def save(model, directory: str | Path) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT's format)."""
    model.save_pretrained(str(directory), safe_serialization=True)


def load(model, directory: str | Path):
    """Put a saved adapter onto a freshly loaded base model, for inference."""
    import peft

    return peft.PeftModel.from_pretrained(model, str(directory), is_trainable=False)
