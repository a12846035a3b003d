"""`tasktune serve --run DIR [--run DIR ...]`: load the models, then answer the OpenAI API.

Every run is addressable by its folder name, and the base model by its ``model`` name.
Runs of a method that can share a base (``SHARES_BASE``: LoRA, as PEFT named adapters)
on the same base share one copy of it in one process; other methods change the base's own
computation and get their own copy.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from tasktune.adapters import get_adapter
from tasktune.config import RunConfig, load_config
from tasktune.encoding import ChatEncoder
from tasktune.recipes.common import (Loaded, as_learned, load_base, load_run, max_new_tokens_for, presented, run_config,
                                     shown_differently)
from tasktune.serve import Served, serve_forever

__all__ = ["load_served", "serve"]


def _served(name: str, loaded: Loaded, adapter: str | None, shared: bool, tokens: int) -> Served:
    present = partial(presented, loaded.cfg)
    return Served(name, loaded.model, loaded.tokenizer, loaded.encoder, adapter, shared, tokens, present,
                  live=not shown_differently(loaded.cfg), learned=partial(as_learned, loaded.cfg))


def _shared_key(cfg: RunConfig) -> tuple:
    """Runs with the same key are served from one copy of their base (and one method)."""
    return (cfg.adapter.method, cfg.model, cfg.quantization, cfg.dtype, cfg.trust_remote_code)


def load_served(run_dirs: list[str | Path], model: str | None = None, overrides: list[str] | None = None) -> list[Served]:
    """Load the base model(s) and every run's adapter, each under its name.

    Args:
        run_dirs: Run folders; each is served under its folder name.
        model: A base model to serve alone (when ``run_dirs`` is empty).
        overrides: ``key=value`` for every run (e.g. ``quantization=int8``).

    Raises:
        FileNotFoundError: a folder is not a run.
        ValueError: two runs have the same folder name.
    """
    dirs = [Path(d) for d in run_dirs]
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a folder name ({names}); each is served under its folder name")
    served: list[Served] = []
    if not dirs:
        cfg = load_config(None, ([f"model={model}"] if model else []) + list(overrides or []))
        loaded = load_base(cfg)
        return [_served(cfg.model, loaded, None, False, max_new_tokens_for(cfg, loaded.tokenizer, []))]
    cfgs = [run_config(d, overrides) for d in dirs]
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        if get_adapter(cfg.adapter.method).SHARES_BASE:
            groups.setdefault(_shared_key(cfg), []).append(i)
    for members in groups.values():
        first = cfgs[members[0]]
        base = load_base(first)
        model = base.model
        for i in members:
            model = get_adapter(cfgs[i].adapter.method).load_named(model, dirs[i] / "adapter", names[i])
        model.eval()
        for i in members:
            cfg = cfgs[i]
            encoder = ChatEncoder(base.tokenizer, cfg.encoding.template, cfg.encoding.system_prompt)
            loaded = Loaded(cfg, model, base.tokenizer, encoder)
            served.append(_served(names[i], loaded, names[i], True, max_new_tokens_for(cfg, base.tokenizer, [])))
        if first.model not in {s.name for s in served}:
            base_cfg = replace(first, data=replace(first.data, task="file"))  # the base shows raw answers
            loaded = Loaded(base_cfg, model, base.tokenizer, base.encoder)
            served.append(_served(first.model, loaded, None, True, 256))
    for i, cfg in enumerate(cfgs):
        if not get_adapter(cfg.adapter.method).SHARES_BASE:
            loaded = load_run(dirs[i], overrides)
            served.append(_served(names[i], loaded, None, False, max_new_tokens_for(cfg, loaded.tokenizer, [])))
    return served


def serve(run_dirs: list[str], model: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, max_tokens_cap: int = 512, overrides: list[str] | None = None,
          max_queue: int = 64) -> None:
    """Load every run (or a base model alone) and answer OpenAI API requests until Ctrl-C
    or SIGTERM; at most ``max_queue`` requests wait, more are answered 429."""
    served = load_served(run_dirs, model, overrides)
    serve_forever(served, host, port, api_key, max_tokens_cap, max_queue)
