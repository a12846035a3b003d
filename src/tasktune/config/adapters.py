"""Stage 4 settings, ``adapter``: the method's name and each method's own section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LoraConfig", "FREEZE_EXTRA", "FreezeConfig", "PrefixConfig", "AdapterConfig"]


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    """LoRA rank."""
    alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: str | list[str] = "all-linear"
    """Module names to adapt, or "all-linear" (every linear layer but the output head)."""
    b_lr_ratio: float = 1.0
    """LoRA+: the B matrices learn this many times faster than the A matrices (1: plain LoRA)."""
    layers: int | list[int] | None = None
    """Blocks to adapt. null: all; n > 0: the last n blocks; a list: these block indices.
    Blocks below the lowest adapted one need no backward pass, so a step gets cheaper."""


FREEZE_EXTRA = ("norm", "lm_head")
"""Modules outside the blocks that ``adapter.freeze.extra`` can add."""


@dataclass(frozen=True)
class FreezeConfig:
    layers: int = 2
    """Blocks to train: n > 0 the last n (as the tutorial), n < 0 the first |n|."""
    modules: Literal["mlp", "attention", "all"] = "mlp"
    """Part of each chosen block that trains: mlp (the tutorial's choice), attention, or
    all (both and the block's norms)."""
    extra: list[str] = field(default_factory=list)
    """Modules outside the blocks that train too: "norm" (the final norm), "lm_head"
    (the output projection; with tied embeddings, as SmolLM2, the input embedding too)."""


@dataclass(frozen=True)
class PrefixConfig:
    pre_seq_len: int = 16
    """Virtual tokens: trained keys and values put before every sequence in every layer."""
    prefix_projection: bool = False
    """Reparameterise the prefix through an MLP (embedding -> Linear -> Tanh -> Linear to
    layers x 2 x kv width), as ChatGLM-6B's PrefixEncoder; false: train the keys and
    values directly. The saved adapter holds the computed keys and values either way."""
    encoder_hidden_size: int = 512
    """Hidden width of that MLP."""
    init: Literal["tokens", "random"] = "tokens"
    """tokens: start from the keys and values the model itself computes for pre_seq_len
    vocabulary tokens drawn at random (in-distribution, as Li & Liang's real-word init);
    random: N(0, 1) values. With prefix_projection the encoder starts at random."""


@dataclass(frozen=True)
class AdapterConfig:
    method: str = "lora"
    """Fine-tuning method, a name in ``tasktune.adapters.ADAPTERS``: lora (PEFT), prefix
    (P-Tuning v2; saved in PEFT's format), freeze (some blocks' own weights), full (every
    weight). An unknown name is refused before the model loads, listing the known ones."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Settings for method: lora."""
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    """Settings for method: prefix."""
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    """Settings for method: freeze."""

    def problems(self) -> list[str]:
        """Each method's settings out of range (the method's name is checked against the
        registry by ``tasktune.adapters``, which knows the names)."""
        p: list[str] = []
        if self.prefix.pre_seq_len < 1 or self.prefix.encoder_hidden_size < 1:
            p.append("adapter.prefix.pre_seq_len and encoder_hidden_size must be at least 1")
        if self.freeze.layers == 0:
            p.append("adapter.freeze.layers: the last n blocks (n > 0) or the first |n| (n < 0), not 0")
        unknown = sorted(set(self.freeze.extra) - set(FREEZE_EXTRA))
        if unknown:
            p.append(f"adapter.freeze.extra: unknown module(s) {unknown}; valid: {', '.join(FREEZE_EXTRA)}")
        layers = self.lora.layers
        if isinstance(layers, int) and layers < 1 or isinstance(layers, list) and (not layers or min(layers) < 0):
            p.append(f"adapter.lora.layers: a count of last blocks >= 1 or a non-empty list of block indices >= 0, got {layers!r}")
        return p
