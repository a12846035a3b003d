"""Write a run's outputs: metrics.json, predictions.jsonl, report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_json", "write_jsonl", "write_report"]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _cell(text: str, width: int = 60) -> str:
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def write_report(path: Path, summary: dict[str, str], metrics: dict, predictions: list[dict]) -> None:
    """``report.md``: settings, base vs tuned exact match overall and per category,
    training figures, and up to ten wrong answers."""
    base, final = metrics.get("base"), metrics["final"]
    lines = ["# tasktune run report", "", "## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(str(v), 80)} |" for k, v in summary.items()]
    lines += ["", "## Exact match", "", "| | base | tuned | n |", "| --- | --- | --- | --- |"]
    lines.append(f"| **overall** | {_pct(base and base['exact_match'])} | {_pct(final['exact_match'])} | {final['n']} |")
    for cat, row in metrics.get("by_category", {}).items():
        lines.append(f"| {cat} | {_pct(row.get('base'))} | {_pct(row['final'])} | {row['n']} |")
    train = metrics.get("train")
    if train:
        lines += ["", "## Training", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in train.items()]
    evals, best = metrics.get("evals"), metrics.get("best")
    if evals:
        lines += ["", "## Evaluations during training", "", "| step | examples | train min | exact match | n |", "| --- | --- | --- | --- | --- |"]
        for e in evals:
            mark = " (best: checkpoint-best/)" if best and e["step"] == best["step"] else ""
            lines.append(f"| {e['step']} | {e['examples']} | {e['seconds'] / 60:.1f} | {_pct(e['exact_match'])}{mark} | {e['n']} |")
        if train and train.get("stopped_at_target"):
            lines += ["", f"Training stopped at step {evals[-1]['step']}: train.stop_at was reached."]
    data = metrics.get("data")
    if data:
        lines += ["", "## Data", ""] + [f"- {k}: {v}" for k, v in data.items()]
    wrong = [p for p in predictions if not p["correct"]][:10]
    lines += ["", f"## Wrong answers ({sum(not p['correct'] for p in predictions)} of {len(predictions)}, first 10)", ""]
    if wrong:
        lines += ["| prompt | reference | prediction |", "| --- | --- | --- |"]
        lines += [f"| {_cell(p['prompt'])} | {_cell(p['reference'])} | {_cell(p['prediction'])} |" for p in wrong]
    else:
        lines.append("None.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
