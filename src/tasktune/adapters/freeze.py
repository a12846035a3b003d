"""Freeze: train only some blocks' weights, as the ChatGLM-6B tutorial's Freeze method
(the MLPs of the last n blocks), everything else frozen."""

from __future__ import annotations

from pathlib import Path

import torch

from tasktune.adapters.weights import load_trained, merged_as_is, no_named_load, save_trained, trainable_groups
from tasktune.config import AdapterConfig, FreezeConfig

__all__ = ["apply", "param_groups", "save", "load", "trained_modules", "merged", "load_named", "TRAINS_BASE", "SAVES_TRAINABLE", "SHARES_BASE"]

TRAINS_BASE = True
"""True: the base's own weights train (so the base cannot be quantized)."""
SAVES_TRAINABLE = True
"""``save`` writes every trainable tensor under its parameter name (a checkpoint needs no
second copy of them)."""
SHARES_BASE = False
"""False: the method changes the base itself: each run gets its own copy of the base."""

METHOD = "freeze"
# Child names of a decoder block, per part, across the architectures transformers ships
# (Llama/Qwen/GLM: self_attn and mlp).
_PARTS = {"attention": ("self_attn", "attention", "attn"), "mlp": ("mlp", "feed_forward", "ffn")}
_FINAL_NORM = ("norm", "final_layernorm", "ln_f")


def _blocks(model) -> tuple[str, torch.nn.ModuleList]:
    """The decoder blocks: the ModuleList with one entry per hidden layer."""
    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, module
    raise ValueError(f"adapter.method=freeze: no list of {n} decoder blocks found in {type(model).__name__}")


def _part(block: torch.nn.Module, part: str, where: str) -> str:
    children = [name for name, _ in block.named_children()]
    for name in _PARTS[part]:
        if name in children:
            return name
    raise ValueError(f"adapter.freeze.modules={part}: {where} has no {part} submodule; its children: {', '.join(children)}")


def trained_modules(model, cfg: FreezeConfig) -> list[str]:
    """Names of the modules whose weights train under ``cfg``, e.g. ``model.layers.29.mlp``.

    Raises:
        ValueError: more blocks asked for than the model has, or an architecture
            without the named part.
    """
    prefix, blocks = _blocks(model)
    n = len(blocks)
    if abs(cfg.layers) > n:
        raise ValueError(f"adapter.freeze.layers={cfg.layers}: the model has {n} blocks")
    picked = range(n - cfg.layers, n) if cfg.layers > 0 else range(-cfg.layers)
    names = []
    for i in picked:
        where = f"{prefix}.{i}"
        if cfg.modules == "all":
            names.append(where)
        else:
            names.append(f"{where}.{_part(blocks[i], cfg.modules, where)}")
    if "norm" in cfg.extra:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        found = [n for n in _FINAL_NORM if isinstance(getattr(decoder, n, None), torch.nn.Module)]
        if not found:
            raise ValueError(f"adapter.freeze.extra: norm: no final norm ({', '.join(_FINAL_NORM)}) in {type(decoder).__name__}")
        norm = getattr(decoder, found[0])
        names.append(next(name for name, m in model.named_modules() if m is norm))
    if "lm_head" in cfg.extra:
        head = model.get_output_embeddings()
        names.append(next(name for name, m in model.named_modules() if m is head))
    return names


def apply(model, cfg: AdapterConfig):
    """Freeze every weight, then unfreeze those of :func:`trained_modules`; returns ``model``."""
    names = set(trained_modules(model, cfg.freeze))
    model.requires_grad_(False)
    for name, module in model.named_modules():
        if name in names:
            module.requires_grad_(True)
    return model


def param_groups(model, cfg: AdapterConfig) -> list[dict]:
    """One group: the unfrozen weights at the scheduled learning rate."""
    return trainable_groups(model)


def save(model, directory: str | Path) -> None:
    """Only the trained tensors, as ``adapter_model.safetensors``."""
    trained = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    save_trained(model, directory, {"tasktune_method": METHOD, "tensors": trained})


def load(model, directory: str | Path):
    """The saved tensors copied onto a freshly loaded base, for inference."""
    return load_trained(model, directory, METHOD)


merged = merged_as_is
load_named = no_named_load
