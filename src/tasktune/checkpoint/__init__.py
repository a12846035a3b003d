"""Stage 6, checkpoint: adapters saved in PEFT's safetensors format, and loaded back;
training checkpoints a run resumes from."""

from tasktune.checkpoint.resume import latest_checkpoint, load_checkpoint, save_checkpoint
from tasktune.checkpoint.store import load_adapter, save_adapter

__all__ = ["save_adapter", "load_adapter", "save_checkpoint", "load_checkpoint", "latest_checkpoint"]
