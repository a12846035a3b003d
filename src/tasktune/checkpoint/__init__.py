"""Stage 6, checkpoint: adapters saved in PEFT's safetensors format, and loaded back."""

from tasktune.checkpoint.store import load_adapter, save_adapter

__all__ = ["save_adapter", "load_adapter"]
