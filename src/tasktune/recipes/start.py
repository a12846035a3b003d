"""``train.init_from``: a run that starts from a finished run's adapter (an RL stage after
SFT, or more SFT), checked against it before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tasktune.adapters import get_adapter
from tasktune.adapters.weights import WEIGHTS_NAME
from tasktune.config import RunConfig, config_to_dict, load_config
from tasktune.recipes.common import metric_text

__all__ = ["check_start", "start_from", "start_figures", "TRAINING_ONLY"]

TRAINING_ONLY = ("dropout", "b_lr_ratio")
"""Adapter settings that change how the adapter trains, not what its weights mean: a run
may start from one trained with others."""


def _start_config(cfg: RunConfig) -> RunConfig:
    folder = Path(cfg.train.init_from)
    if not (folder / "config.yaml").is_file():
        raise ValueError(f"train.init_from: {folder} is not a tasktune run folder (no config.yaml); name a folder "
                         "written by `tasktune train`")
    if not (folder / "adapter" / "adapter_config.json").is_file():
        raise ValueError(f"train.init_from: {folder} holds no finished adapter ({folder / 'adapter'} is missing): "
                         "let the run finish (`tasktune train CONFIG --resume`)")
    return load_config(folder / "config.yaml")


def _continues(method: str) -> bool:
    """The method's saved weights can be loaded back into a model in training."""
    adapter = get_adapter(method)
    return adapter.SAVES_TRAINABLE or hasattr(adapter, "load_into")


def check_start(cfg: RunConfig) -> None:
    """Refuse a start this run cannot take, one line each: no such run, a run of another
    model or method or adapter shape, a method that cannot continue from saved weights.

    Raises:
        ValueError: naming ``train.init_from`` and what to change.
    """
    method = cfg.adapter.method
    if cfg.train.objective != "sft" and not _continues(method):
        raise ValueError(f"train.objective={cfg.train.objective}: adapter.method={method} is not supported by the RL "
                         "stage yet; train lora (or freeze, full)")
    if not cfg.train.init_from:
        return
    folder = cfg.train.init_from
    if Path(folder).resolve() == Path(cfg.output_dir).resolve():
        raise ValueError(f"train.init_from: {folder} is this run's own output_dir; write the new run elsewhere "
                         "(output_dir=runs/NEW)")
    start = _start_config(cfg)
    if start.model != cfg.model:
        raise ValueError(f"train.init_from: {folder} was trained on model {start.model!r}, this config's model is "
                         f"{cfg.model!r}; start from a run of the same base")
    if start.adapter.method != method:
        raise ValueError(f"train.init_from: {folder} is a {start.adapter.method} run, this config trains {method}; "
                         f"set adapter.method={start.adapter.method}")
    if not _continues(method):
        raise ValueError(f"train.init_from: a {method} run cannot be continued yet; start {method} fresh, or train lora")
    mine, theirs = config_to_dict(cfg.adapter), config_to_dict(start.adapter)
    there = theirs.get(method) or {}
    differ = [f"{k}: {there.get(k)!r} there, {v!r} here" for k, v in (mine.get(method) or {}).items()
              if k not in TRAINING_ONLY and there.get(k) != v]
    if differ:
        raise ValueError(f"train.init_from: the adapter's settings differ from {folder}'s ({'; '.join(differ)}); an adapter "
                         "goes on in its own shape: copy its adapter section")


def start_from(model, cfg: RunConfig) -> None:
    """Load ``train.init_from``'s adapter weights into ``model`` (its adapter applied with
    the same settings)."""
    from safetensors.torch import load_file

    directory = Path(cfg.train.init_from) / "adapter"
    adapter = get_adapter(cfg.adapter.method)
    if hasattr(adapter, "load_into"):
        adapter.load_into(model, directory)
        return
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    saved = load_file(str(directory / WEIGHTS_NAME))
    with torch.no_grad():
        for name, p in params.items():
            if name not in saved:
                raise ValueError(f"{directory}: no saved tensor {name!r}; use the run's own adapter settings")
            p.copy_(saved[name])


def start_figures(cfg: RunConfig, metric: str, say) -> dict:
    """``{"base": figures, "start_from": run}``: the starting run's final held-out figures,
    when its held-out set is this run's (the same data, encoding and evaluation draw), said
    through ``say``; empty (and why, said) otherwise."""
    start = _start_config(cfg)
    same = (start.data == cfg.data and start.encoding == cfg.encoding and start.eval.max_examples == cfg.eval.max_examples
            and start.eval.seed == cfg.eval.seed)
    metrics = Path(cfg.train.init_from) / "metrics.json"
    figures = json.loads(metrics.read_text(encoding="utf-8")) if same and metrics.is_file() else {}
    if "final" not in figures:
        why = ("its held-out set is not this run's (other data or eval settings)" if not same else
               "it has no final figures (metrics.json)")
        say(f"{cfg.train.init_from}: {why}; the starting figures are left out")
        return {}
    # metrics.json keeps the categories beside the summaries ({cat: {base, final, n}}).
    categories = {c: {"exact_match": row["final"], "n": row["n"]} for c, row in figures.get("by_category", {}).items()}
    final = figures["final"]
    say(f"start ({cfg.train.init_from}) {metric}: {metric_text(metric, final[metric])} on {final['n']} held-out")
    return {"base": {**final, "by_category": categories}, "start_from": str(cfg.train.init_from)}
