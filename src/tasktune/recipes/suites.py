"""The robustness suites of a run: built from its held-out set, evaluated, summarised."""

from __future__ import annotations

from tasktune.config import RunConfig
from tasktune.data import Datasets
from tasktune.data.suites import build_suites
from tasktune.eval import weakest_suite
from tasktune.recipes.common import Loaded, answer_budget, evaluate_examples, metric_text

__all__ = ["suites_of", "evaluate_suites", "suites_line", "SUITE_FIGURES"]

SUITE_FIGURES = ("exact_match", "n", "rouge-1", "rouge-2", "rouge-l", "bleu-4", "step_accuracy", "cut_at_cap")
"""The figures of a suite's summary that metrics.json keeps (where the summary has them)."""


def suites_of(cfg: RunConfig, data: Datasets) -> dict:
    """The run's suites (``eval.suites``), each from the first ``eval.suite_examples``
    held-out examples."""
    k = cfg.eval.suite_examples or len(data.eval)
    problems = data.problems[:k] if data.problems is not None else None
    return build_suites(cfg.data, cfg.eval.suites, data.eval[:k], problems, cfg.eval.seed, every=data.problems)


def evaluate_suites(loaded: Loaded, suites: dict) -> tuple[dict[str, dict], list[dict]]:
    """Each suite's figures and prediction rows (each row names its ``suite``).

    A suite's answers may be longer than the held-out ones (``longer``): its cap is the
    run's or its longest reference + 8 tokens, whichever is larger.
    """
    figures: dict[str, dict] = {}
    rows: list[dict] = []
    for name, examples in suites.items():
        cap = max(loaded.cfg.generate.max_new_tokens or 0, answer_budget(loaded.tokenizer, examples))
        summary, predictions = evaluate_examples(loaded, examples, f"suite {name}", max_new_tokens=cap)
        figures[name] = {k: summary[k] for k in SUITE_FIGURES if k in summary}
        rows += [{"suite": name, **row} for row in predictions]
    return figures, rows


def suites_line(metric: str, held_out: dict, suites: dict[str, dict]) -> str:
    """One line for the terminal: the held-out figure, each suite's and the weakest."""
    if not suites:
        return ""
    cells = ", ".join(f"{name} {metric_text(metric, s[metric])}" for name, s in suites.items())
    weakest = weakest_suite(suites, metric)
    return (f"robustness suites ({metric}): held-out {metric_text(metric, held_out[metric])}; {cells}; weakest: {weakest}")
