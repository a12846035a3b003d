"""What a causal LM's ``forward`` takes, asked of the model under any wrapper (PEFT, DDP)."""

from __future__ import annotations

import inspect

__all__ = ["unwrapped", "forward_parameters", "cache_argument"]


def unwrapped(model):
    """The transformers model inside a PEFT model and a DDP wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "module", base)


def forward_parameters(model) -> set[str]:
    """The argument names of the underlying model's ``forward``."""
    return set(inspect.signature(unwrapped(model).forward).parameters)


def cache_argument(model) -> str:
    """The forward argument that takes a key/value cache: ``cache`` since transformers
    5.2x, ``past_key_values`` before and in remote-code models."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"
