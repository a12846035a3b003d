"""`tasktune eval --run DIR [--run DIR ...]`: the base model and one or more runs on the
same held-out set, side by side."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from tasktune.data import build_datasets
from tasktune.recipes.common import (evaluate_examples, headline_metric, load_base, load_gguf, load_run, metric_text,
                                     run_config)
from tasktune.recipes.results import merge_categories, write_results
from tasktune.recipes.suites import evaluate_suites, suites_line, suites_of

__all__ = ["evaluate_runs", "evaluate_gguf", "side_by_side"]

_FIGURES = ("exact_match", "rouge-1", "rouge-2", "rouge-l", "bleu-4")


def _base_key(cfg) -> tuple:
    """Runs whose base model sees the same weights and the same rendering share one base evaluation."""
    return (cfg.model, cfg.quantization, cfg.dtype, cfg.encoding.template, cfg.encoding.system_prompt)


def side_by_side(columns: dict[str, dict], metric: str) -> str:
    """A plain-text table: one column per evaluated model, rows for the headline metric,
    the other figures, and exact match per category."""
    names = list(columns)
    width = max(12, *(len(n) for n in names))
    first = max(24, *(len(c) for s in columns.values() for c in s.get("by_category", {})))
    lines = [f"{'':{first}} " + " ".join(f"{n:>{width}}" for n in names)]
    order = [metric] + [f for f in _FIGURES if f != metric]
    for fig in order:
        if all(fig in s for s in columns.values()):
            label = f"{fig}*" if fig == metric else fig
            lines.append(f"{label:{first}} " + " ".join(f"{metric_text(fig, s[fig]):>{width}}" for s in columns.values()))
    cats = sorted({c for s in columns.values() for c in s.get("by_category", {})})
    if len(cats) > 1:
        for cat in cats:
            cells = [s.get("by_category", {}).get(cat) for s in columns.values()]
            lines.append(f"{cat:{first}} " + " ".join(f"{metric_text('exact_match', c and c['exact_match']):>{width}}" for c in cells))
    n = next(iter(columns.values()))["n"]
    per_cat = "; exact match per category below the overall figures" if len(cats) > 1 else ""
    lines.append(f"(* the headline figure (eval.metric); {n} held-out examples{per_cat}; ROUGE/BLEU x 100)")
    return "\n".join(lines)


def evaluate_runs(run_dirs: list[str | Path], overrides: list[str] | None = None) -> dict[str, dict]:
    """Evaluate the base model(s) and every run on the first run's held-out set.

    Each distinct base (model, quantization, dtype, rendering) is evaluated once. Each
    run folder gets ``eval_metrics.json``, ``eval_predictions.jsonl`` and a fresh
    ``report.md`` with its plots (training figures from its metrics.json and
    train_log.jsonl). Prints the side-by-side table.

    Returns:
        Column name (``base`` or ``base <model>``, then each run folder's name) -> summary.
    """
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("give at least one run folder: tasktune eval --run runs/NAME [--run runs/OTHER ...]")
    cfgs = [run_config(d, overrides) for d in dirs]
    first = cfgs[0]
    data = build_datasets(first.data, first.eval.max_examples, first.eval.seed, first.seed)
    metric = headline_metric(first, data.eval)
    distinct = list(dict.fromkeys(_base_key(c) for c in cfgs))
    columns: dict[str, dict] = {}
    base_of: dict[tuple, dict] = {}
    for cfg in cfgs:
        key = _base_key(cfg)
        if cfg.eval.base and key not in base_of:
            name = "base" if len(distinct) == 1 else f"base {Path(cfg.model).name}"
            loaded = load_base(cfg)
            base_of[key], _ = evaluate_examples(loaded, data.eval, f"eval {name}")
            columns[name] = base_of[key]
            del loaded
            gc.collect()
    suites = suites_of(first, data)
    lines = []
    for d, cfg in zip(dirs, cfgs):
        tuned = load_run(d, overrides)
        summary, rows = evaluate_examples(tuned, data.eval, f"eval {d.name}")
        figures, suite_rows = evaluate_suites(tuned, suites)
        del tuned
        gc.collect()
        columns[d.name if d.name not in columns else str(d)] = summary
        _write_run(d, cfg, metric, base_of.get(_base_key(cfg)), (summary, rows), (figures, suite_rows))
        if figures:
            lines.append(f"{d.name}: " + suites_line(metric, summary, figures))
    print(side_by_side(columns, metric))
    for line in lines:
        print(line)
    return columns


def _write_run(d: Path, cfg, metric: str, base: dict | None, held_out: tuple[dict, list[dict]],
               suites: tuple[dict, list[dict]]) -> None:
    """eval_metrics.json, eval_predictions.jsonl, eval_suite_predictions.jsonl and report.md
    (with plots) of one run."""
    final, rows = held_out
    base = json.loads(json.dumps(base)) if base else None  # merge_categories pops; keep the shared copy intact
    final = json.loads(json.dumps(final))
    metrics: dict = {"metric": metric}
    if base:
        metrics["base"] = base
    metrics["final"] = final
    metrics["by_category"] = merge_categories(base, final)
    if suites[0]:
        metrics["suites"] = suites[0]
    trained = d / "metrics.json"
    if trained.is_file():  # training figures and in-training evaluations stay in the report
        old = json.loads(trained.read_text(encoding="utf-8"))
        kept = {k: old[k] for k in ("train", "evals", "best", "data") if k in old}
    else:
        kept = {}
    write_results(d, cfg, metrics, rows, suites[1], prefix="eval_", keep=kept)


def evaluate_gguf(path: str | Path, out_dir: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Answer the held-out set (and the suites) of the run a GGUF file was exported from,
    through llama.cpp, and write the same files as any evaluation into ``out_dir``
    (default: ``<file>-eval`` beside it): eval_metrics.json, eval_predictions.jsonl,
    eval_suite_predictions.jsonl and report.md.

    Returns:
        The held-out summary.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no llama.cpp binding, or a file without a tasktune run config.
    """
    file = Path(path)
    loaded = load_gguf(file, overrides)
    cfg = loaded.cfg
    out = Path(out_dir) if out_dir else file.with_name(file.stem + "-eval")
    out.mkdir(parents=True, exist_ok=True)
    data = build_datasets(cfg.data, cfg.eval.max_examples, cfg.eval.seed, cfg.seed)
    metric = headline_metric(cfg, data.eval)
    try:
        summary, rows = evaluate_examples(loaded, data.eval, f"llama.cpp {file.name}")
        figures, suite_rows = evaluate_suites(loaded, suites_of(cfg, data))
    finally:
        loaded.model.close()
    _write_run(out, cfg, metric, None, (summary, rows), (figures, suite_rows))
    print(f"{file.name} through llama.cpp: {metric} {metric_text(metric, summary[metric])} on {summary['n']} held-out "
          f"examples; results in {out}")
    if figures:
        print(suites_line(metric, summary, figures))
    return summary
