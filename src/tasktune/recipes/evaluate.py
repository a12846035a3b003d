"""`tasktune eval --run DIR`: base vs tuned exact match on the run's held-out set."""

from __future__ import annotations

from pathlib import Path

from tasktune.data import build_datasets
from tasktune.recipes.common import evaluate_examples, load_base, load_run
from tasktune.recipes.finetune import merge_categories
from tasktune.report import write_json

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> dict:
    """Evaluate the base model and the run's adapter on the same held-out examples.

    Writes ``eval_metrics.json`` in the run folder and prints a side-by-side table.

    Returns:
        ``{"base": ..., "final": ..., "by_category": ...}`` as in metrics.json.
    """
    tuned = load_run(run_dir, overrides)
    cfg = tuned.cfg
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    metrics: dict = {}
    if cfg.eval.base:
        metrics["base"], _ = evaluate_examples(load_base(cfg), data.eval, "eval base")
    metrics["final"], _ = evaluate_examples(tuned, data.eval, "eval tuned")
    metrics["by_category"] = merge_categories(metrics.get("base"), metrics["final"])
    write_json(Path(run_dir) / "eval_metrics.json", metrics)
    base = metrics.get("base")
    print(f"{'':24} {'base':>8} {'tuned':>8} {'n':>5}")
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    print(f"{'overall':24} {pct(base and base['exact_match']):>8} {pct(metrics['final']['exact_match']):>8} {metrics['final']['n']:>5}")
    for cat, row in metrics["by_category"].items():
        print(f"{cat:24} {pct(row['base']):>8} {pct(row['final']):>8} {row['n']:>5}")
    return metrics
