"""Save and load a model's own trained weights (methods that train base tensors).

Freeze and full fine-tuning change tensors of the base model itself, so what is saved
is those tensors by name (``adapter_model.safetensors``) beside an
``adapter_config.json`` that records the method and its settings. Loading copies them
onto a freshly loaded base. Tied tensors (SmolLM2's input embedding and output head are
one tensor) are saved once, under the first name ``named_parameters`` gives them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["trainable_groups", "tensor_copies", "save_trained", "load_trained", "merged_as_is", "no_named_load",
           "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def trainable_groups(model) -> list[dict]:
    """One optimizer group with every trainable tensor, at the scheduled learning rate."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]


def tensor_copies(named) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of ``(name, tensor)`` pairs as detached CPU copies with storage of
    their own: what safetensors writes. (The weights an FSDP run gathers whole are views
    into one all-gather buffer, which safetensors cannot read.)"""
    return {n: t.detach().to("cpu", copy=True).contiguous() for n, t in named}


def save_trained(model, directory: str | Path, settings: dict) -> None:
    """Write the trainable tensors of ``model`` and ``settings`` (JSON-serialisable)."""
    from safetensors.torch import save_file

    d = Path(directory)
    tensors = tensor_copies((n, p) for n, p in model.named_parameters() if p.requires_grad)
    if not tensors:
        raise ValueError("the model has no trainable tensors to save")
    save_file(tensors, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
    (d / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def load_trained(model, directory: str | Path, method: str):
    """Copy the tensors saved in ``directory`` onto ``model`` (a fresh base), frozen.

    Raises:
        ValueError: the folder was saved by another method, or names a tensor the
            model does not have (another architecture).
    """
    from safetensors.torch import load_file

    d = Path(directory)
    settings = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
    if settings.get("tasktune_method") != method:
        raise ValueError(f"{d / CONFIG_NAME}: saved by method {settings.get('tasktune_method')!r}, not {method!r}")
    params = dict(model.named_parameters(remove_duplicate=False))
    tensors = load_file(str(d / WEIGHTS_NAME))
    missing = sorted(set(tensors) - set(params))
    if missing:
        raise ValueError(f"{d / WEIGHTS_NAME}: the model has no tensor {missing[0]!r} ({len(missing)} unknown); another base model?")
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{d / WEIGHTS_NAME}: {name} has shape {tuple(value.shape)}, the model {tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].dtype))
    model.requires_grad_(False)
    return model


def merged_as_is(model):
    """``merged`` of a method whose trained weights are the base's own: ``model`` itself."""
    return model


def no_named_load(model, directory: str | Path, name: str):
    """``load_named`` of a method that changes the base itself (``SHARES_BASE`` False).

    Raises:
        NotImplementedError: always: each run is loaded on its own base with ``load``.
    """
    raise NotImplementedError("this method changes the base itself: runs do not share one; load each with load()")
