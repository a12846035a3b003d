"""P-Tuning v2 (prefix tuning): trained keys and values before every sequence in every
layer, the base frozen.

The prefix lives on the model as ``prefix_encoder``: an embedding of ``pre_seq_len``
rows of ``layers x 2 x kv width`` values, or, with ``prefix_projection``, ChatGLM-6B's
reparameterisation (embedding -> Linear -> Tanh -> Linear to the same width). A forward
pre-hook on the model does the rest on every call, in training and in ``generate``
alike:

- an empty (or absent) key/value cache is filled with the prefix, one row per sequence;
- the attention mask grows by ``pre_seq_len`` ones when it does not cover the prefix yet;
- positions come from that mask: the i-th real token of a row is at ``pre_seq_len + i``
  whatever its left padding, so batched left-padded generation equals one-row
  generation and both match training (right-padded, the same numbering).

PEFT's prefix tuning is not used for this: with transformers 5 its ``generate`` hands
the prefix over as ``past_key_values`` while transformers passes its own ``cache``, so
the prefix is dropped in generation (and its positions differ between training and
generation). The saved adapter is in PEFT's format (``PREFIX_TUNING``: the prefix keys
and values as ``prompt_embeddings``), so stock ``peft.PeftModel.from_pretrained`` reads it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from tasktune.adapters.weights import CONFIG_NAME, WEIGHTS_NAME, no_named_load, trainable_groups
from tasktune.config import AdapterConfig
from tasktune.model.forward import cache_argument

__all__ = ["apply", "param_groups", "save", "load", "PrefixEncoder", "merged", "load_named", "TRAINS_BASE", "SAVES_TRAINABLE", "SHARES_BASE"]

TRAINS_BASE = False
"""False: the base stays frozen (it may be quantized: QLoRA)."""
SAVES_TRAINABLE = False
"""``save`` writes another form than the trainable tensors by parameter name (a checkpoint
keeps those too)."""
SHARES_BASE = False
"""False: the method changes the base itself: each run gets its own copy of the base."""



def _shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head width) of a decoder config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class PrefixEncoder(torch.nn.Module):
    """The prefix's keys and values, ``(pre_seq_len, layers * 2 * kv_heads * head_dim)``.

    Per virtual token the values are laid out as (layer, key/value, head, head width),
    PEFT's layout, so the saved tensor is PEFT's ``prompt_embeddings``.
    """

    def __init__(self, pre_seq_len: int, width: int, hidden: int, projection: bool, encoder_hidden: int):
        super().__init__()
        self.embedding = torch.nn.Embedding(pre_seq_len, hidden if projection else width)
        self.transform = (
            torch.nn.Sequential(torch.nn.Linear(hidden, encoder_hidden), torch.nn.Tanh(), torch.nn.Linear(encoder_hidden, width))
            if projection
            else None
        )

    def forward(self) -> torch.Tensor:
        values = self.embedding.weight
        return self.transform(values) if self.transform is not None else values


def _hook(name: str, model, args: tuple, kwargs: dict):
    """Forward pre-hook: prefix into the cache, mask grown, positions from the mask.
    ``name`` is the forward argument that takes the cache."""
    ids = kwargs.get("input_ids")
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is None:
        return None
    rows, new = ids.shape[:2]
    encoder: PrefixEncoder = model.prefix_encoder
    length = encoder.embedding.num_embeddings
    cache = kwargs.get(name)
    if cache is None or cache.get_seq_length() == 0:
        from transformers import DynamicCache

        cache = cache if cache is not None else DynamicCache(config=model.config)
        layers, kv_heads, head_dim = _shape(model.config)
        # (P, L*2*H*D) -> (L, 2, rows, H, P, D)
        kv = encoder().view(length, layers, 2, kv_heads, head_dim).permute(1, 2, 3, 0, 4)
        kv = kv.unsqueeze(2).expand(layers, 2, rows, kv_heads, length, head_dim).to(model.dtype)
        for layer in range(layers):
            cache.update(kv[layer, 0], kv[layer, 1], layer)
    past = cache.get_seq_length()
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(rows, past + new, dtype=torch.long, device=ids.device)
    elif mask.dim() == 2 and mask.shape[1] == past + new - length:
        mask = torch.cat([mask.new_ones(rows, length), mask], dim=1)
    if mask.dim() != 2 or mask.shape[1] != past + new:
        raise ValueError(
            f"prefix tuning: attention mask of shape {tuple(mask.shape)} for {past} cached and {new} new tokens"
        )
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -new:]
    return args, {**kwargs, name: cache, "attention_mask": mask, "position_ids": positions, "use_cache": True}


def _attach(model, encoder: PrefixEncoder):
    model.requires_grad_(False)
    param = next(model.parameters())
    model.prefix_encoder = encoder.to(device=param.device)
    # Looked up once, not per call.
    model.register_forward_pre_hook(functools.partial(_hook, cache_argument(model)), with_kwargs=True)
    return model


def apply(model, cfg: AdapterConfig):
    """Freeze ``model`` and give it a trainable prefix; returns ``model`` itself.

    Raises:
        ValueError: ``model`` already carries a prefix.
    """
    if hasattr(model, "prefix_encoder"):
        raise ValueError("adapter.method=prefix: the model already has a prefix")
    p = cfg.prefix
    layers, kv_heads, head_dim = _shape(model.config)
    torch_dtype = next(model.parameters()).dtype
    encoder = PrefixEncoder(
        p.pre_seq_len, layers * 2 * kv_heads * head_dim, model.config.hidden_size, p.prefix_projection, p.encoder_hidden_size
    ).to(torch.float32 if torch_dtype in (torch.float16, torch.bfloat16) else torch_dtype)
    if p.init == "tokens" and not p.prefix_projection:
        with torch.no_grad():
            encoder.embedding.weight.copy_(_token_values(model, p.pre_seq_len))
    model = _attach(model, encoder)
    model.prefix_encoder.requires_grad_(True)
    return model


@torch.no_grad()
def _token_values(model, length: int) -> torch.Tensor:
    """Keys and values the model computes for ``length`` random vocabulary tokens (seeded),
    in the prefix layout (P, layers * 2 * kv width): the model starts as if a short
    stretch of real text preceded every sequence, at positions 0..P-1 as the prefix."""
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids.to(next(model.parameters()).device), use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None) or out.past_key_values
    layers, kv_heads, head_dim = _shape(model.config)
    rows = []
    for layer in range(layers):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values  # (1, H, P, D)
        rows.append(torch.stack([keys[0], values[0]]))  # (2, H, P, D)
    kv = torch.stack(rows)  # (L, 2, H, P, D) -> (P, L, 2, H, D)
    return kv.permute(3, 0, 1, 2, 4).reshape(length, -1).float()


def param_groups(model, cfg: AdapterConfig) -> list[dict]:
    """One group: the prefix (and its encoder) at the scheduled learning rate."""
    return trainable_groups(model)


def save(model, directory: str | Path) -> None:
    """The prefix keys and values in PEFT's ``PREFIX_TUNING`` format (with projection:
    the encoder's output; the encoder itself is a training-time device)."""
    from safetensors.torch import save_file

    d = Path(directory)
    encoder: PrefixEncoder = model.prefix_encoder
    with torch.no_grad():
        values = encoder().detach().float().contiguous().cpu()
    layers, kv_heads, head_dim = _shape(model.config)
    save_file({"prompt_embeddings": values}, str(d / WEIGHTS_NAME), metadata={"format": "pt"})
    config = {
        "peft_type": "PREFIX_TUNING",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": getattr(model.config, "_name_or_path", None),
        "num_virtual_tokens": values.shape[0],
        "num_layers": layers,
        "token_dim": kv_heads * head_dim,
        "num_attention_heads": kv_heads,
        "num_transformer_submodules": 1,
        "prefix_projection": False,
        "encoder_hidden_size": model.config.hidden_size,
        "inference_mode": True,
    }
    (d / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load(model, directory: str | Path):
    """Put a saved prefix onto a freshly loaded base model, for inference.

    Raises:
        ValueError: the folder is not a prefix adapter, or was made for another shape.
    """
    from safetensors.torch import load_file

    d = Path(directory)
    config = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
    if config.get("peft_type") != "PREFIX_TUNING":
        raise ValueError(f"{d / CONFIG_NAME}: peft_type {config.get('peft_type')!r}, not a prefix (PREFIX_TUNING)")
    values = load_file(str(d / WEIGHTS_NAME))["prompt_embeddings"]
    layers, kv_heads, head_dim = _shape(model.config)
    width = layers * 2 * kv_heads * head_dim
    if values.shape[1] != width:
        raise ValueError(f"{d / WEIGHTS_NAME}: prefix width {values.shape[1]}, this model needs {width}; another base model?")
    encoder = PrefixEncoder(values.shape[0], width, model.config.hidden_size, False, 1)
    with torch.no_grad():
        encoder.embedding.weight.copy_(values)
    return _attach(model, encoder.to(next(model.parameters()).dtype))


def merged(model):
    """Not available: the prefix is extra keys and values in every layer, not weights.

    Raises:
        ValueError: always, with what to do instead.
    """
    raise ValueError("a prefix (P-Tuning v2) run cannot be merged into plain weights: its virtual tokens are extra keys "
                     "and values in every layer. Serve it with `tasktune serve --run` instead, or train lora to export.")


load_named = no_named_load
