"""When the GGUF export warns, and what it says."""

from __future__ import annotations

from tasktune.recipes.gguf_export import _warning


def _row(kept: float, check: dict | None) -> dict:
    return {"tuning_kept": kept, "rounding_vs_change": 1.1, **({"check": check} if check is not None else {})}


def test_a_measured_loss_over_five_points_warns_with_its_cause():
    check = {"exact_match": 0.05, "run_exact_match": 0.947, "lost_points": 89.7, "n": 300}
    text = _warning("q4_1", _row(0.31, check), "Q4_1")
    assert text.startswith("q4_1: exact match 5.0% through llama.cpp against the run's 94.7% (89.7 points lost)")
    assert "keeps 31% of the tuning change" in text and "de-quantized from a Q4_1 GGUF file" in text
    assert _warning("q4_0", _row(0.95, {**check, "lost_points": 4.9}), "Q4_1") is None


def test_without_the_runs_own_answers_a_file_that_drops_the_tuning_still_warns():
    # Checked through llama.cpp, but the run folder has no predictions to compare with.
    text = _warning("q4_1", _row(0.31, {"exact_match": 0.05, "n": 300}), "Q4_1")
    assert text is not None and "measure with `tasktune eval --gguf`" in text
    assert _warning("q4_1", _row(0.31, None), None) is not None  # not checked at all
    assert _warning("q8_0", _row(0.99, None), None) is None
