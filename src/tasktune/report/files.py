"""Write a run's outputs: metrics.json, predictions.jsonl, report.md and its plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasktune.eval import weakest_suite

__all__ = ["write_json", "write_jsonl", "write_report", "read_log", "informative_errors", "worst_steps"]


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


def read_log(path: Path) -> list[dict]:
    """The rows of a run's JSONL file (train_log.jsonl, predictions.jsonl); [] when there is none."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _figure_text(name: str, value: float | None) -> str:
    if name == "exact_match":
        return _pct(value)
    return "-" if value is None else f"{value:.2f}"


def informative_errors(predictions: list[dict], k: int = 10) -> list[dict]:
    """Up to ``k`` rows to read first: wrong answers taken in turn from each category
    (largest first, then by name), so one weak spot does not hide the others; within a
    category the lowest ROUGE-L first."""
    wrong = [p for p in predictions if not p["correct"]]
    by_cat: dict[str, list[dict]] = {}
    for p in sorted(wrong, key=lambda p: p.get("rouge-l", 0.0)):
        by_cat.setdefault(p["category"], []).append(p)
    queues = [q for _, q in sorted(by_cat.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    picked: list[dict] = []
    while len(picked) < k and any(queues):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    return picked


def worst_steps(predictions: list[dict], k: int = 10) -> list[dict]:
    """Up to ``k`` rows with a wrong step, worst first: the smallest share of right
    steps, then the earliest first wrong step."""
    wrong = [p for p in predictions if p.get("first_wrong")]
    return sorted(wrong, key=lambda p: (p["steps_right"] / max(p["steps"], 1), p["first_wrong"]["step"]))[:k]


def _marked(p: dict) -> str:
    """The raw answer with its first wrong step in bold."""
    text, wrong = p["raw_output"], p["first_wrong"]
    at = text.find(wrong["wrote"]) if wrong["wrote"] else -1
    if at < 0:
        return _cell(text, 90)
    return _cell(text[:at], 45) + "**" + _cell(wrong["wrote"], 30) + "**" + _cell(text[at + len(wrong["wrote"]):], 45)


def _steps_section(metrics: dict, predictions: list[dict]) -> list[str]:
    """Step accuracy, where the first wrong step falls, and the worst examples."""
    base, final = metrics.get("base") or {}, metrics["final"]
    if "step_accuracy" not in final:
        return []
    lines = ["", "## Worked steps", "",
             "Every step the model wrote is checked by value (`3-9=-6+10=4`: -6 is 3-9, -6+10 is 4); the first "
             "wrong step is the first one that is false or differs from the reference's (for column answers step "
             "n is column n, units first).", "",
             "| figure | base | tuned |", "| --- | --- | --- |",
             f"| exact match | {_pct(base.get('exact_match'))} | {_pct(final['exact_match'])} |",
             f"| step accuracy (right steps / steps written) | {_pct(base.get('step_accuracy'))} | {_pct(final['step_accuracy'])} |",
             f"| answers with every step right | {_pct(base.get('all_steps_right'))} | {_pct(final['all_steps_right'])} |",
             f"| steps written | {base.get('steps_written', '-')} | {final['steps_written']} |"]
    table = final.get("first_wrong") or {}
    if table:
        cols = list(range(1, max(int(n) for row in table.values() for n in row) + 1))
        lines += ["", "First wrong step of the tuned model, by kind and step:", "",
                  "| kind | " + " | ".join(f"step {n}" for n in cols) + " | all |",
                  "| --- | " + " | ".join("---" for _ in cols) + " | --- |"]
        for kind, row in table.items():
            lines.append(f"| {kind} | " + " | ".join(str(row.get(str(n), "")) for n in cols) + f" | {sum(row.values())} |")
    worst = worst_steps(predictions)
    if worst:
        lines += ["", f"The {len(worst)} worst answers (first wrong step in bold):", "",
                  "| prompt | answer | first wrong | expected there | right answer |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {_cell(p['prompt'], 30)} | {_marked(p)} | step {p['first_wrong']['step']}: {p['first_wrong']['kind']} | "
                  f"{_cell(p['first_wrong']['expected'] or '-', 30)} | {'yes' if p['correct'] else 'no'} |" for p in worst]
    return lines


def _plots(out: Path, metrics: dict, log_rows: list[dict]) -> list[str]:
    """loss.png and eval.png in ``out``; the markdown lines that show them."""
    from tasktune.report.plots import plot_loss, plot_metric

    lines = []
    name = out.resolve().name
    losses = [(r["step"], r["loss"]) for r in log_rows if "loss" in r]
    if losses:
        plot_loss(out / "loss.png", [s for s, _ in losses], [v for _, v in losses], f"{name}: training loss")
        lines += ["![training loss over steps](loss.png)", ""]
    metric = metrics.get("metric", "exact_match")
    points = []
    if metrics.get("base"):
        points.append((0, metrics["base"][metric]))
    points += [(e["step"], e[metric]) for e in metrics.get("evals", []) if metric in e]
    train = metrics.get("train") or {}
    if train.get("steps") and metrics.get("final"):
        points.append((train["steps"], metrics["final"][metric]))
    if points:
        scale = 100.0 if metric == "exact_match" else 1.0
        label = "exact match (%)" if metric == "exact_match" else metric
        series = {"overall": ([s for s, _ in points], [v * scale for _, v in points])}
        # Worked answers: step accuracy on the same evaluations, beside exact match.
        steps = [(0, metrics["base"].get("step_accuracy"))] if metrics.get("base") else []
        steps += [(e["step"], e.get("step_accuracy")) for e in metrics.get("evals", [])]
        if train.get("steps") and metrics.get("final"):
            steps.append((train["steps"], metrics["final"].get("step_accuracy")))
        steps = [(s, v) for s, v in steps if v is not None]
        if metric == "exact_match" and steps:
            series = {label: series["overall"], "step accuracy (%)": ([s for s, _ in steps], [100 * v for _, v in steps])}
        # An RL stage: its sampled completions' mean reward beside the held-out curve.
        rewards = [(r["step"], r["reward_mean"]) for r in log_rows if "reward_mean" in r]
        if rewards and max(abs(v) for _, v in rewards) <= 1:
            if list(series) == ["overall"]:
                series = {f"held-out {label}": series["overall"]}
            series["sampled reward (x 100)"] = ([s for s, _ in rewards], [100 * v for _, v in rewards])
        plot_metric(out / "eval.png", series, label, f"{name}: held-out {label}")
        lines += [f"![held-out {metric} over steps](eval.png)", ""]
    return lines


SUITE_TEXT = {
    "turns_1": "after 1 earlier turn (a question of the task, answered worked or plain)",
    "turns_3": "after 3 earlier turns (questions of the task answered worked or plain, unrelated exchanges)",
    "system": "under a system prompt never trained on",
    "longer": "operands one digit longer than any training operand",
}
"""What each robustness suite asks, for the report (``style_<name>``: in that prompt style)."""


def _suite_text(name: str) -> str:
    if name.startswith("style_"):
        return f"in the prompt style {name[len('style_'):]}"
    return SUITE_TEXT.get(name, name)


def _suites_section(metrics: dict, suite_rows: list[dict]) -> list[str]:
    """The robustness table (held-out first, then each suite; the weakest in bold) and
    the weakest suite's wrong answers."""
    suites, final = metrics.get("suites"), metrics["final"]
    if not suites:
        return []
    metric = metrics.get("metric", "exact_match")
    weakest = weakest_suite(suites, metric)
    lines = ["", "## Robustness", "",
             "Each held-out question asked again, another way (`suite_predictions.jsonl` holds every answer).", "",
             f"| suite | asked | {metric} | n |", "| --- | --- | --- | --- |",
             f"| held-out | alone, as trained | {_figure_text(metric, final[metric])} | {final['n']} |"]
    for name, s in suites.items():
        bold = "**" if name == weakest else ""
        lines.append(f"| {bold}{name}{bold} | {_suite_text(name)} | {_figure_text(metric, s[metric])} | {s['n']} |")
    wrong = [r for r in suite_rows if r.get("suite") == weakest and not r["correct"]][:5]
    if wrong:
        lines += ["", f"Wrong answers of the weakest suite, {weakest} ({len(wrong)} shown):", "",
                  "| prompt | earlier turns | system | reference | prediction |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {_cell(r['prompt'], 30)} | {r.get('earlier_turns', 0)} | {_cell(r.get('system') or '-', 30)} | "
                  f"{_cell(r['reference'], 20)} | {_cell(r['prediction'], 60)} |" for r in wrong]
    return lines


def _rewards_section(log_rows: list[dict]) -> list[str]:
    """An RL stage's sampled completions over its logged steps, and each category's reward
    at its first and last logged step."""
    rows = [r for r in log_rows if "reward_mean" in r]
    if not rows:
        return []
    lines = ["", "## Sampled completions (the RL stage)", "",
             "| step | reward | spread | groups without spread | trained or kept | length | cut at cap | step accuracy | KL |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        kl = f"{r['kl']:.4f}" if "kl" in r else "-"
        lines.append(f"| {r['step']} | {r['reward_mean']:.3f} | {r['reward_std']:.3f} | {_pct(r['no_spread'])} | "
                     f"{r.get('trained', r.get('kept', '-'))} | {r['completion_length']:.1f} | {_pct(r['truncated'])} | "
                     f"{_pct(r.get('step_accuracy'))} | {kl} |")
    first, last = rows[0].get("reward_by_category", {}), rows[-1].get("reward_by_category", {})
    if first or last:
        lines += ["", f"Reward by category at step {rows[0]['step']} and step {rows[-1]['step']} (each step's own problems):", "",
                  "| category | first | last |", "| --- | --- | --- |"]
        lines += [f"| {c} | {_pct(first.get(c))} | {_pct(last.get(c))} |" for c in sorted({*first, *last})]
    return lines


def write_report(
    out: Path, summary: dict[str, str], metrics: dict, predictions: list[dict], log_rows: list[dict],
    suite_rows: list[dict] | None = None,
) -> None:
    """``report.md`` in the run folder ``out``, with its plots (loss.png, eval.png):
    settings, base vs tuned figures (exact match, ROUGE-1/2/L, BLEU-4) overall and exact
    match per category, the robustness suites (``metrics["suites"]``, the weakest beside
    the held-out figure, its wrong answers from ``suite_rows``), training figures,
    evaluations during training, and the ten most informative errors."""
    base, final = metrics.get("base"), metrics["final"]
    metric = metrics.get("metric", "exact_match")
    first = "start" if metrics.get("start_from") else "base"  # a run that continued another
    lines = [f"# tasktune run report: {out.resolve().name}", "", "## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(str(v), 80)} |" for k, v in summary.items()]
    lines += ["", f"## Results on {final['n']} held-out examples", "",
              f"Headline figure: **{metric}**. ROUGE/BLEU are x 100 (ChatGLM-6B's recipe).", "",
              f"| figure | {first} | tuned |", "| --- | --- | --- |"]
    for name in ("exact_match", "rouge-1", "rouge-2", "rouge-l", "bleu-4"):
        if name in final:
            bold = "**" if name == metric else ""
            lines.append(f"| {bold}{name}{bold} | {_figure_text(name, base and base.get(name))} | {_figure_text(name, final[name])} |")
    suites = metrics.get("suites")
    if suites:
        weakest = weakest_suite(suites, metric)
        lines += ["", f"Weakest robustness suite: **{weakest}** {_figure_text(metric, suites[weakest][metric])} "
                  "(Robustness, below)."]
    lines += _suites_section(metrics, suite_rows or [])
    cats = metrics.get("by_category", {})
    if len(cats) > 1:
        lines += ["", "## Exact match by category", "", f"| category | {first} | tuned | n |", "| --- | --- | --- | --- |"]
        lines += [f"| {cat} | {_pct(row.get('base'))} | {_pct(row['final'])} | {row['n']} |" for cat, row in cats.items()]
    lines += ["", "## Plots", ""] + _plots(out, metrics, log_rows)
    train = metrics.get("train")
    if train:
        lines += ["## Training", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in train.items()]
    lines += _rewards_section(log_rows)
    evals, best = metrics.get("evals"), metrics.get("best")
    if evals:
        lines += ["", "## Evaluations during training", "", f"| step | examples | train min | {metric} | n |", "| --- | --- | --- | --- | --- |"]
        for e in evals:
            mark = " (best: checkpoint-best/)" if best and e["step"] == best["step"] else ""
            lines.append(f"| {e['step']} | {e['examples']} | {e['seconds'] / 60:.1f} | {_figure_text(metric, e[metric])}{mark} | {e['n']} |")
        if train and train.get("stopped_at_target"):
            lines += ["", f"Training stopped at step {evals[-1]['step']}: train.stop_at was reached."]
    lines += _steps_section(metrics, predictions)
    data = metrics.get("data")
    if data:
        lines += ["", "## Data", ""] + [f"- {k}: {v}" for k, v in data.items()]
    shown = informative_errors(predictions)
    n_wrong = sum(not p["correct"] for p in predictions)
    lines += ["", f"## Errors to read first ({len(shown)} of {n_wrong} wrong, of {len(predictions)}; each category in turn)", ""]
    if shown:
        lines += ["| category | prompt | reference | prediction | ROUGE-L |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {p['category']} | {_cell(p['prompt'])} | {_cell(p['reference'])} | {_cell(p['prediction'])} | {p.get('rouge-l', 0.0):.1f} |" for p in shown]
    else:
        lines.append("None.")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
