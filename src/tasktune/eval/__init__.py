"""Stage 8, eval: metric functions of strings (verifiers, exact match, ROUGE/BLEU, summaries)."""

from tasktune.eval.numeric import extract_number, is_correct, matches_value
from tasktune.eval.steps import check_steps, first_wrong_step, step_figures, summarize_steps, wrong_step_span
from tasktune.eval.summary import summarize, weakest_suite
from tasktune.eval.text import TEXT_METRICS, text_scores

__all__ = [
    "extract_number", "matches_value", "is_correct", "summarize", "TEXT_METRICS", "text_scores",
    "check_steps", "first_wrong_step", "wrong_step_span", "step_figures", "summarize_steps", "weakest_suite",
]
