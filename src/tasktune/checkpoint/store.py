"""Save and load the trained part of a model; the method's own module knows how."""

from __future__ import annotations

from pathlib import Path

from tasktune.adapters import get_adapter

__all__ = ["save_adapter", "load_adapter"]


def save_adapter(model, method: str, directory: str | Path) -> Path:
    """Write the trainable tensors of ``model`` to ``directory`` (created if needed).

    For LoRA this is ``adapter_config.json`` + ``adapter_model.safetensors``, loadable
    by stock ``peft.PeftModel.from_pretrained`` on the same base.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    get_adapter(method).save(getattr(model, "module", model), out)
    return out


def load_adapter(base_model, method: str, directory: str | Path):
    """Apply the adapter saved in ``directory`` to ``base_model``, ready for inference.

    Raises:
        FileNotFoundError: ``directory`` holds no saved adapter.
    """
    d = Path(directory)
    if not (d / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no adapter in {d} (adapter_config.json missing); is this a tasktune run folder?")
    model = get_adapter(method).load(base_model, d)
    model.eval()
    return model
