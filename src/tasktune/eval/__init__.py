"""Stage 8, eval: metric functions of strings (verifiers, exact match, summaries)."""

from tasktune.eval.numeric import extract_number, is_correct, matches_value
from tasktune.eval.summary import summarize

__all__ = ["extract_number", "matches_value", "is_correct", "summarize"]
