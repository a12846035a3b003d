"""LoRA through PEFT: low-rank updates on the chosen linear layers, base frozen."""

from __future__ import annotations

from pathlib import Path

import torch

from tasktune.adapters.weights import tensor_copies
from tasktune.config import AdapterConfig

__all__ = ["apply", "param_groups", "save", "load", "load_into", "merged", "load_named", "TRAINS_BASE", "SAVES_TRAINABLE", "SHARES_BASE"]

TRAINS_BASE = False
"""False: the base stays frozen (it may be quantized: QLoRA)."""
SAVES_TRAINABLE = False
"""``save`` writes another form than the trainable tensors by parameter name (a checkpoint
keeps those too)."""
SHARES_BASE = True
"""True: several runs of this method on one base are served from one copy of the base
(``load_named`` adds each under its name)."""


def apply(model, cfg: AdapterConfig):
    """Wrap ``model`` in a PEFT LoRA model; only the LoRA matrices train.

    Returns:
        The ``peft.PeftModel``.
    """
    import peft

    lora = cfg.lora
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    layers = _block_indices(model, lora.layers)
    if layers is not None and targets == "all-linear":
        targets = _linear_names(model)  # PEFT takes layers_to_transform only with a list
    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def _block_indices(model, layers: int | list[int] | None) -> list[int] | None:
    """The block indices ``layers`` names (None: every block), checked against the model."""
    if layers is None:
        return None
    n = model.config.num_hidden_layers
    picked = list(range(n - layers, n)) if isinstance(layers, int) else sorted(set(layers))
    if picked[0] < 0 or picked[-1] >= n:
        raise ValueError(f"adapter.lora.layers={layers!r}: the model has {n} blocks (indices 0..{n - 1})")
    return picked


def _linear_names(model) -> list[str]:
    """Leaf names of the linear layers inside the blocks (what "all-linear" means to PEFT)."""
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head})


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
    # The parameters, not state_dict(): under FSDP, state_dict() gives each process's
    # shards even while the weights are gathered whole.
    state = tensor_copies((n, p) for n, p in model.named_parameters() if "lora_" in n)
    model.save_pretrained(str(directory), safe_serialization=True, state_dict=state)


def load(model, directory: str | Path):
    """Put a saved adapter onto a freshly loaded base model, for inference."""
    import peft

    return peft.PeftModel.from_pretrained(model, str(directory), is_trainable=False)


def load_into(model, directory: str | Path) -> None:
    """Copy a saved adapter's matrices into ``model``'s own (LoRA applied with the same
    settings): training goes on from them (``train.init_from``)."""
    import peft
    from safetensors.torch import load_file

    result = peft.set_peft_model_state_dict(model, load_file(str(Path(directory) / "adapter_model.safetensors")))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"{directory}: the saved adapter does not fit this model's LoRA layers ({len(missing)} missing, "
                         f"e.g. {(missing or result.unexpected_keys)[0]!r}); use the run's own adapter settings")


def merged(model):
    """The LoRA updates added into the base weights, the PEFT wrapper removed."""
    return model.merge_and_unload()


def load_named(model, directory: str | Path, name: str):
    """Add the adapter saved in ``directory`` under ``name``, for inference: onto a plain
    base (returns the PEFT model) or beside the adapters already on a PEFT model."""
    import peft

    if isinstance(model, peft.PeftModel):
        model.load_adapter(str(directory), adapter_name=name, is_trainable=False)
        return model
    return peft.PeftModel.from_pretrained(model, str(directory), adapter_name=name, is_trainable=False)
