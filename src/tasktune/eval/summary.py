"""Aggregate per-example results into overall and per-category figures."""

from __future__ import annotations

from collections import defaultdict

__all__ = ["summarize", "weakest_suite"]


def summarize(correct: list[bool], categories: list[str], scores: list[dict[str, float]] | None = None) -> dict:
    """Exact match overall and by category, and the mean of each per-example score.

    Args:
        correct: Per example, right or not.
        categories: Per example, its category.
        scores: Per example, named scores (ROUGE/BLEU x 100); their means are added
            under the same names.

    Returns:
        ``{"exact_match": float, "n": int, <score>: mean, ..., "by_category": {name:
        {"exact_match", "n"}}}`` with categories sorted by name.
    """
    groups: dict[str, list[bool]] = defaultdict(list)
    for ok, cat in zip(correct, categories, strict=True):
        groups[cat].append(ok)
    n = len(correct)
    out: dict = {"exact_match": sum(correct) / n if n else 0.0, "n": n}
    if scores:
        for name in scores[0]:
            out[name] = round(sum(s[name] for s in scores) / len(scores), 4)
    out["by_category"] = {c: {"exact_match": sum(v) / len(v), "n": len(v)} for c, v in sorted(groups.items())}
    return out


def weakest_suite(suites: dict[str, dict], metric: str) -> str:
    """The name of the suite with the lowest ``metric`` (the first of equals, in order)."""
    return min(suites, key=lambda name: suites[name][metric])
