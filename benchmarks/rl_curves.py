"""The curves of runs that continue one start (issue #31: RL, more SFT, a random-reward
control) as markdown tables from their run folders: held-out exact match at each
in-training evaluation and at the end, per category at the end, and the RL stages'
sampling figures. Reads only what the runs wrote (metrics.json, train_log.jsonl).

Usage:
    python benchmarks/rl_curves.py runs/arith_muldiv_lora runs/arith_muldiv_grpo runs/arith_muldiv_more_sft ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _log(run: Path) -> list[dict]:
    path = run / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def curves(runs: list[Path]) -> list[str]:
    """One row per run: training minutes, steps, each evaluation during training, the end."""
    lines = ["| run | objective | steps | train min | evaluations during training (step: exact match on their n) | final (n) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        cfg = (run / "config.yaml").read_text()
        objective = next((line.split(":", 1)[1].strip() for line in cfg.splitlines() if line.strip().startswith("objective:")), "sft")
        evals = ", ".join(f"{e['step']}: {_pct(e['exact_match'])} ({e['n']})" for e in m.get("evals", []))
        t = m["train"]
        lines.append(f"| {run.name} | {objective} | {t['steps']} | {t['seconds'] / 60:.1f} | {evals or '-'} | "
                     f"**{_pct(m['final']['exact_match'])}** ({m['final']['n']}) |")
    return lines


def categories(runs: list[Path]) -> list[str]:
    """Final exact match per category, one column per run (the first run's start beside it)."""
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    cats = sorted({c for m in metrics for c in m.get("by_category", {})})
    lines = ["| category | n | " + " | ".join(r.name for r in runs) + " |", "| --- | --- |" + " --- |" * len(runs)]
    for c in cats:
        n = next(m["by_category"][c]["n"] for m in metrics if c in m.get("by_category", {}))
        cells = [_pct(m.get("by_category", {}).get(c, {}).get("final")) for m in metrics]
        lines.append(f"| {c} | {n} | " + " | ".join(cells) + " |")
    return lines


def sampling(runs: list[Path]) -> list[str]:
    """The RL stages' sampled completions: first and last logged step, and the seconds."""
    lines = ["| run | reward first -> last | groups without spread | trained or kept a step | completion tokens | "
             "sampling s / update s a step |", "| --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        rows = [r for r in _log(run) if "reward_mean" in r]
        if not rows:
            continue
        n = len(rows)
        mean = lambda key: sum(r.get(key, 0) for r in rows) / n  # noqa: E731 - a local average
        lines.append(f"| {run.name} | {rows[0]['reward_mean']:.3f} -> {rows[-1]['reward_mean']:.3f} | {_pct(mean('no_spread'))}% | "
                     f"{mean('trained') or mean('kept'):.1f} | {mean('completion_length'):.1f} | "
                     f"{mean('sample_seconds'):.1f} / {mean('update_seconds'):.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for table in (curves(args.runs), categories(args.runs), sampling(args.runs)):
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
