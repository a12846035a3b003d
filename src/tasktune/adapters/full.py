"""Full fine-tuning: every weight of the model trains."""

from __future__ import annotations

from pathlib import Path

from tasktune.adapters.weights import load_trained, merged_as_is, no_named_load, save_trained, trainable_groups
from tasktune.config import AdapterConfig

__all__ = ["apply", "param_groups", "save", "load", "merged", "load_named", "TRAINS_BASE", "SAVES_TRAINABLE", "SHARES_BASE"]

TRAINS_BASE = True
"""True: the base's own weights train (so the base cannot be quantized)."""
SAVES_TRAINABLE = True
"""``save`` writes every trainable tensor under its parameter name (a checkpoint needs no
second copy of them)."""
SHARES_BASE = False
"""False: the method changes the base itself: each run gets its own copy of the base."""

METHOD = "full"


def apply(model, cfg: AdapterConfig):
    """Make every parameter trainable; returns ``model`` itself."""
    model.requires_grad_(True)
    return model


def param_groups(model, cfg: AdapterConfig) -> list[dict]:
    """One group: every weight at the scheduled learning rate."""
    return trainable_groups(model)


def save(model, directory: str | Path) -> None:
    """Every weight (tied ones once) as ``adapter_model.safetensors``."""
    save_trained(model, directory, {"tasktune_method": METHOD})


def load(model, directory: str | Path):
    """The saved weights copied onto a freshly loaded base, for inference."""
    return load_trained(model, directory, METHOD)


merged = merged_as_is
load_named = no_named_load
