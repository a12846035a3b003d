"""Stage 4, adapters: one module per method, each satisfying :class:`Adapter`.

The registry below is the one place that knows the method names; everything else asks
the method's module (its flags and functions) instead of branching on the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from tasktune.adapters import freeze, full, lora, prefix
from tasktune.config import AdapterConfig

__all__ = ["Adapter", "ADAPTERS", "get_adapter"]


@runtime_checkable
class Adapter(Protocol):
    """What a method module provides (a module satisfies this structurally)."""

    TRAINS_BASE: bool
    """The base's own weights train (so the base cannot be quantized)."""
    SAVES_TRAINABLE: bool
    """``save`` writes every trainable tensor under its parameter name (a checkpoint needs
    no second copy of them)."""
    SHARES_BASE: bool
    """Several runs can be served from one copy of the base (``load_named``)."""

    def apply(self, model, cfg: AdapterConfig):
        """Make ``model`` trainable by this method; returns the model to train."""

    def param_groups(self, model, cfg: AdapterConfig) -> list[dict]:
        """Optimizer groups, each with an ``lr_scale``."""

    def save(self, model, directory: str | Path) -> None:
        """Write the trained part into ``directory``."""

    def load(self, model, directory: str | Path):
        """The saved part put onto a freshly loaded base, for inference."""

    def merged(self, model):
        """A plain model with the method folded into its weights (raises ValueError with
        the reason where the method cannot be)."""

    def load_named(self, model, directory: str | Path, name: str):
        """Add a saved run under ``name`` to a shared base (``SHARES_BASE`` methods)."""


ADAPTERS: dict[str, Adapter] = {"lora": lora, "prefix": prefix, "freeze": freeze, "full": full}


def get_adapter(method: str) -> Adapter:
    """The module implementing ``method``.

    Raises:
        ValueError: unknown method (lists the known ones).
    """
    if method not in ADAPTERS:
        raise ValueError(f"adapter.method: unknown method {method!r}; available: {', '.join(ADAPTERS)}")
    return ADAPTERS[method]
