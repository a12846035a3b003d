"""report: plots that draw Chinese text, and the errors the report shows first."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib  # noqa: F401 - a dependency of tasktune: a broken install fails here, it is not skipped

from tasktune.report import informative_errors, write_report
from tasktune.report.plots import cjk_fonts, plot_loss, plot_metric


def _glyph_warnings(draw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "Glyph" in str(w.message) or "font" in str(w.message).lower()]


def test_plots_draw_chinese_text_with_a_cjk_font(tmp_path: Path):
    fonts = cjk_fonts()
    assert fonts, "no CJK font: the dev extras install mplfonts (Noto Sans CJK SC)"
    path = tmp_path / "eval.png"
    problems = _glyph_warnings(
        lambda: plot_metric(path, {"总体": ([0, 10, 20], [0.0, 40.0, 80.0]), "减法": ([0, 20], [0.0, 70.0])},
                            "准确率 (%)", "数学题：精确匹配")
    )
    assert problems == []  # every character had a glyph
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same text with only the default Latin font misses glyphs: the check above can fail.
    import matplotlib.pyplot as plt

    def latin_only():
        fig, ax = plt.subplots()
        ax.set_title("数学题：精确匹配", fontfamily="DejaVu Sans")
        fig.savefig(tmp_path / "latin.png")
        plt.close(fig)

    assert any("Glyph" in p for p in _glyph_warnings(latin_only))


def test_loss_plot_is_a_png(tmp_path: Path):
    plot_loss(tmp_path / "loss.png", [10, 20, 30], [2.0, 1.0, 0.5], "训练损失")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def _row(cat: str, ok: bool, rouge: float = 0.0, prompt: str = "p") -> dict:
    return {"category": cat, "correct": ok, "rouge-l": rouge, "prompt": prompt, "reference": "r", "prediction": "x"}


def test_informative_errors_take_each_category_in_turn_lowest_rouge_first():
    rows = [_row("sub", False, 50, "s1"), _row("sub", False, 10, "s2"), _row("sub", False, 30, "s3"),
            _row("add", False, 5, "a1"), _row("add", True), _row("mul", False, 0, "m1")]
    picked = [r["prompt"] for r in informative_errors(rows, k=4)]
    assert picked == ["s2", "a1", "m1", "s3"]  # largest category first, one each, then round two
    assert informative_errors([_row("a", True)]) == []


def test_report_lists_figures_plots_and_errors(tmp_path: Path):
    base = {"exact_match": 0.0, "n": 2, "rouge-1": 1.0, "rouge-2": 0.0, "rouge-l": 1.0, "bleu-4": 0.5}
    final = {"exact_match": 0.5, "n": 2, "rouge-1": 60.0, "rouge-2": 20.0, "rouge-l": 55.0, "bleu-4": 30.0}
    metrics = {"metric": "rouge-l", "base": base, "final": final,
               "by_category": {"all": {"base": 0.0, "final": 0.5, "n": 2}},
               "train": {"steps": 20}, "evals": [{"step": 10, "examples": 40, "seconds": 6.0, "n": 2, "exact_match": 0.0, "rouge-l": 30.0}]}
    rows = [_row("all", False, 12.5, "写一首诗"), _row("all", True, 97.0)]
    log = [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.0}, {"step": 10, "eval_rouge-l": 30.0}]
    write_report(tmp_path, {"model": "m", "decoding": "greedy"}, metrics, rows, log)
    text = (tmp_path / "report.md").read_text()
    assert "| **rouge-l** | 1.00 | 55.00 |" in text  # the headline figure in bold
    assert "| exact_match | 0.0% | 50.0% |" in text
    assert "](loss.png)" in text and "](eval.png)" in text
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "eval.png").is_file()
    assert "写一首诗" in text and "| decoding | greedy |" in text


def test_report_shows_step_accuracy_where_the_first_wrong_step_falls_and_the_worst(tmp_path: Path):
    ref = "6+9=15,9+9=18+1=19,1+5=6+1=7 #### 795"
    wrong = "6+9=15,9+9=18,1+5=6+1=7 #### 785"
    final = {"exact_match": 0.5, "n": 2, "step_accuracy": 5 / 6, "steps_written": 6, "all_steps_right": 0.5,
             "first_wrong": {"carry": {"2": 1}}}
    metrics = {"metric": "exact_match", "final": final, "by_category": {}, "train": {"steps": 20},
               "evals": [{"step": 10, "examples": 40, "seconds": 6.0, "n": 2, "exact_match": 0.0, "step_accuracy": 0.5}]}
    rows = [{**_row("add", True, 100.0, "196+599="), "raw_output": ref, "steps": 3, "steps_right": 3, "first_wrong": None},
            {**_row("add", False, 80.0, "196+599="), "raw_output": wrong, "steps": 3, "steps_right": 2,
             "first_wrong": {"step": 2, "kind": "carry", "wrote": "9+9=18", "expected": "9+9=18+1=19"}}]
    write_report(tmp_path, {"model": "m"}, metrics, rows, [{"step": 10, "loss": 1.0}])
    text = (tmp_path / "report.md").read_text()
    assert "## Worked steps" in text
    assert "| step accuracy (right steps / steps written) | - | 83.3% |" in text
    assert "| carry |  | 1 | 1 |" in text  # kind, step 1, step 2, all
    assert "6+9=15,**9+9=18**,1+5=6+1=7 #### 785" in text  # the first wrong step in bold
    assert "step 2: carry" in text


def test_report_shows_each_suite_the_weakest_beside_the_headline_and_its_wrong_answers(tmp_path: Path):
    final = {"exact_match": 0.98, "n": 300}
    suites = {"turns_1": {"exact_match": 0.97, "n": 300}, "turns_3": {"exact_match": 0.55, "n": 300},
              "style_zh_pairs": {"exact_match": 0.96, "n": 300}}
    metrics = {"metric": "exact_match", "final": final, "by_category": {}, "suites": suites}
    suite_rows = [{**_row("add", False, 0.0, "30+41="), "suite": "turns_3", "earlier_turns": 3, "reference": "71",
                   "prediction": "4+1=5,3+4=7 #### 75"},
                  {**_row("add", False, 0.0, "12+13="), "suite": "turns_1", "earlier_turns": 1, "prediction": "x"}]
    write_report(tmp_path, {"model": "m"}, metrics, [_row("add", True)], [], suite_rows)
    text = (tmp_path / "report.md").read_text()
    assert "Weakest robustness suite: **turns_3** 55.0% (Robustness, below)" in text  # beside the headline figure
    assert "| held-out | alone, as trained | 98.0% | 300 |" in text
    assert "| **turns_3** | after 3 earlier turns" in text and "| turns_1 | after 1 earlier turn" in text
    assert "| style_zh_pairs | in the prompt style zh_pairs | 96.0% | 300 |" in text
    wrong = text.split("Wrong answers of the weakest suite, turns_3")[1]
    assert "30+41=" in wrong and "4+1=5,3+4=7 #### 75" in wrong and "12+13=" not in wrong
    # Without suites the section is not written.
    write_report(tmp_path, {"model": "m"}, {**metrics, "suites": {}}, [_row("add", True)], [])
    assert "Robustness" not in (tmp_path / "report.md").read_text()
