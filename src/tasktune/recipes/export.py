"""`tasktune export --run DIR --out DIR2`: the tuned model as a plain Hugging Face folder.

The run's method folds itself into the base weights (``merged``: LoRA adds its updates;
freeze and full runs already hold their trained weights); a method that cannot (a prefix
run's virtual tokens are extra keys and values in every layer) is refused with its reason. The base is
loaded unquantized in the run's dtype, from its GGUF file when it came from one: the
weights are then ordinary de-quantized tensors, and the config is rewritten without
the GGUF reference so that the folder loads on its own.

The folder holds ``model.safetensors``, ``config.json``, ``generation_config.json``
(stopping at the run's end-of-turn token) and the tokenizer, whose chat template is the
one the run rendered with, including its system turn: ``apply_chat_template`` in plain
transformers renders a conversation exactly as the run was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tasktune.adapters import get_adapter
from tasktune.config import RunConfig
from tasktune.encoding import pad_id_for
from tasktune.encoding.templates import get_template
from tasktune.model import rebuilt_without_gguf
from tasktune.recipes.common import load_run

__all__ = ["export_run", "exported_template", "merged_run"]


def exported_template(cfg: RunConfig, tokenizer) -> str | None:
    """The chat template the run rendered with, with the run's system prompt as the
    default system turn (None: the tokenizer's own template, unchanged)."""
    template = get_template(cfg.encoding.template) if cfg.encoding.template else tokenizer.chat_template
    if template is None or cfg.encoding.system_prompt is None:
        return template if cfg.encoding.template else None
    default = json.dumps(cfg.encoding.system_prompt, ensure_ascii=False)
    prelude = (
        "{%- if messages[0]['role'] != 'system' -%}"
        f"{{%- set messages = [{{'role': 'system', 'content': {default}}}] + messages -%}}"
        "{%- endif -%}"
    )
    return prelude + template


def fresh_folder(out_dir: str | Path) -> Path:
    """``out_dir``, which must not hold anything yet.

    Raises:
        ValueError: it exists and is not empty.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; give a new folder to export into")
    return out


def merged_run(run_dir: str | Path):
    """The run loaded unquantized, and its model with the method folded into the weights.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
        ValueError: a method that cannot be merged (a prefix run), with the reason.
    """
    loaded = load_run(run_dir, ["quantization=none"])
    try:
        model = get_adapter(loaded.cfg.adapter.method).merged(loaded.model)
    except ValueError as exc:
        raise ValueError(f"{run_dir}: {exc}") from None
    return loaded, rebuilt_without_gguf(getattr(model, "module", model))


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's model, merged, as a Hugging Face folder loadable without tasktune.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
        ValueError: a prefix run, or ``out_dir`` exists and is not empty.
    """
    out = fresh_folder(out_dir)
    loaded, model = merged_run(run_dir)
    model.generation_config.eos_token_id = loaded.encoder.stop_id
    model.generation_config.pad_token_id = pad_id_for(loaded.tokenizer, loaded.encoder.stop_id)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.save_pretrained(str(out), safe_serialization=True)
    tokenizer = loaded.tokenizer
    template = exported_template(loaded.cfg, tokenizer)
    if template is not None:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(str(out))
    return out
