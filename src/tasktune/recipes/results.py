"""What `train` and `eval` both write of an evaluation: the settings line, the figures
by category, the robustness suites, and the run folder's result files."""

from __future__ import annotations

from pathlib import Path

from tasktune.config import RunConfig
from tasktune.report import read_log, write_json, write_jsonl, write_report

__all__ = ["run_summary", "decoding", "merge_categories", "write_results"]


def run_summary(cfg: RunConfig) -> dict[str, str]:
    """The settings a reader of report.md needs first."""
    t = cfg.train
    summary = {
        "model": cfg.model,
        "method": cfg.adapter.method,
        "task": cfg.data.task if cfg.data.task != "file" else f"file {cfg.data.file.path}",
        "system prompt": repr(cfg.encoding.system_prompt),
        "steps x batch": f"{t.max_steps} x {t.batch_size}",
        "lr": f"{t.lr:g} ({t.schedule}, warm-up {t.warmup_steps})",
        "decoding": decoding(cfg),
    }
    if t.init_from:
        summary["starts from"] = t.init_from
    if t.objective != "sft":
        r = cfg.rl
        summary["objective"] = (f"{t.objective}: {r.num_generations} completions per prompt (temperature {r.temperature}, "
                                f"top_p {r.top_p}), reward {r.reward}{', step credit' if r.step_credit else ''}, "
                                f"loss {r.loss_type}, beta {r.beta}")
    return summary


def decoding(cfg: RunConfig) -> str:
    """How evaluation answers were generated, for the report."""
    g = cfg.generate
    how = f"sampling (temperature {g.temperature}, top_p {g.top_p}, seed {g.seed})" if g.do_sample else "greedy"
    return f"{how}, at most {g.max_new_tokens} new tokens" if g.max_new_tokens else how


def merge_categories(base: dict | None, final: dict) -> dict:
    """Pop per-category figures out of the summaries into ``{cat: {base, final, n}}``."""
    before = base.pop("by_category") if base else {}
    return {
        cat: {"base": before.get(cat, {}).get("exact_match"), "final": row["exact_match"], "n": row["n"]}
        for cat, row in final.pop("by_category").items()
    }


def write_results(out: Path, cfg: RunConfig, metrics: dict, rows: list[dict], suite_rows: list[dict], prefix: str = "",
                  keep: dict | None = None) -> None:
    """``{prefix}metrics.json``, ``{prefix}predictions.jsonl``, ``{prefix}suite_predictions.jsonl``
    (when suites ran) and report.md with its plots, in the run folder ``out``; ``keep``
    adds figures to the report only (a re-evaluation keeps the training's)."""
    write_json(out / f"{prefix}metrics.json", metrics)
    write_jsonl(out / f"{prefix}predictions.jsonl", rows)
    if suite_rows:
        write_jsonl(out / f"{prefix}suite_predictions.jsonl", suite_rows)
    else:  # an earlier evaluation's suites are not this one's
        (out / f"{prefix}suite_predictions.jsonl").unlink(missing_ok=True)
    write_report(out, run_summary(cfg), {**metrics, **(keep or {})}, rows, read_log(out / "train_log.jsonl"), suite_rows)
