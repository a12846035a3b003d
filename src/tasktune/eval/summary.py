"""Aggregate per-example correctness into overall and per-category exact match."""

from __future__ import annotations

from collections import defaultdict

__all__ = ["summarize"]


def summarize(correct: list[bool], categories: list[str]) -> dict:
    """Exact match overall and by category.

    Returns:
        ``{"exact_match": float, "n": int, "by_category": {name: {"exact_match", "n"}}}``
        with categories sorted by name.
    """
    groups: dict[str, list[bool]] = defaultdict(list)
    for ok, cat in zip(correct, categories, strict=True):
        groups[cat].append(ok)
    n = len(correct)
    return {
        "exact_match": sum(correct) / n if n else 0.0,
        "n": n,
        "by_category": {c: {"exact_match": sum(v) / len(v), "n": len(v)} for c, v in sorted(groups.items())},
    }
