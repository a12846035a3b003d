"""A run folder: what `tasktune train` writes there, and the checks before it writes
(a folder that already holds a run, a run to resume, a resumed run's changed settings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tasktune.checkpoint import latest_checkpoint
from tasktune.config import RunConfig, config_to_dict

__all__ = ["RUN_FILES", "prepare_folder", "truncate_log", "config_changes"]

RUN_FILES = ("config.yaml", "train_log.jsonl", "metrics.json", "predictions.jsonl", "report.md", "loss.png",
             "eval.png", "adapter", "checkpoint-best", "eval_metrics.json", "eval_predictions.jsonl")
"""What `tasktune train` writes into a run folder, besides checkpoint-STEP/ folders."""


def prepare_folder(out: Path, resume: bool, overwrite: bool, clean: bool) -> Path | None:
    """Check the run folder against the flags; returns the checkpoint to resume from.
    ``clean`` (the main process): delete what ``overwrite`` replaces, and unfinished
    checkpoint writes.

    Raises:
        ValueError: the folder holds a run and neither flag was given, or ``resume``
            finds nothing to resume.
    """
    held = out.is_dir() and (any((out / name).exists() for name in RUN_FILES) or latest_checkpoint(out) is not None)
    if resume:
        if (out / "metrics.json").is_file():
            raise ValueError(f"{out}: this run has finished (metrics.json); nothing to resume. "
                             "Start over with --overwrite, or give another output_dir")
        found = latest_checkpoint(out)
        if found is None:
            raise ValueError(f"{out}: no complete checkpoint-STEP/ to resume from (train.save_every writes them); "
                             "start over with --overwrite")
        if clean:
            for partial in out.glob(".checkpoint-*"):  # a write the crash cut short
                shutil.rmtree(partial)
        return found
    if held and not overwrite:
        raise ValueError(f"{out} already holds a run; continue it with --resume, start over with --overwrite "
                         "(deletes that run's files), or give another output_dir=...")
    if held and clean:
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        for path in list(out.glob("checkpoint-*")) + list(out.glob(".checkpoint-*")):
            shutil.rmtree(path)
    return None


def truncate_log(path: Path, step: int) -> None:
    """Drop the log lines of steps after ``step`` (a resumed run writes them again)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
    path.write_text("".join(line for line in lines if json.loads(line).get("step", 0) <= step), encoding="utf-8")


def config_changes(out: Path, cfg: RunConfig) -> list[str]:
    """Keys whose value differs from the run's saved config.yaml."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return []

    def flat(d: dict, prefix: str = "") -> dict:
        items = {}
        for k, v in d.items():
            items.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return items

    saved = flat(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    now = flat(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg), allow_unicode=True)))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
