"""tasktune.eval: answer extraction, value matching and summaries, as pure functions of strings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tasktune.eval import extract_number, is_correct, matches_value, summarize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("98+83=181", "181"),  # after the last "="
        ("3-8=-5", "-5"),  # the sign after "=" is kept
        ("x = -5", "-5"),
        ("1+2=3, so 3+4=7", "7"),  # the last "=" wins
        ("2=2 and then 9 apples", "9"),  # ... and the last number after it
        ("The answer is 42, not 7.", "7"),  # no "=": the last number
        ("It is 8.4", "8.4"),
        ("98+83=", "83"),  # nothing after "=": last number of the whole text
        ("１８１", "181"),  # full-width digits
        ("答：１２．５", "12.5"),  # full-width point
        ("－５", "-5"),  # full-width minus
        ("−5", "-5"),  # U+2212 minus
        ("1,234", "1234"),  # thousands separator
        ("x = 1,234,567.25", "1234567.25"),
        ("１，２３４", "1234"),  # full-width comma between digit groups
        ("12,34", "34"),  # not a thousands group: two numbers
        ("7, 8, 9", "9"),
        ("Janet makes $18 every day.\n#### 18", "18"),  # GSM8K's final line
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["", "no digits here", "= ?", "答：不知道"])
def test_extract_number_none(text):
    assert extract_number(text) is None


@pytest.mark.parametrize(
    "prediction, reference, ok",
    [
        ("8.4", "8.4", True),
        ("8.40", "8.4", True),
        ("8.44", "8.4", True),  # within half a unit of the last place (0.05)
        ("8.36", "8.4", True),
        ("8.46", "8.4", False),
        ("8.35", "8.4", False),  # the half-unit bound is open
        ("181", "181", True),
        ("181.4", "181", True),
        ("180.6", "181", True),
        ("181.5", "181", False),
        ("182", "181", False),
        ("98+83=181", "181", True),  # equation answers compare by their value
        ("98+83=181", "98+83=181", True),
        ("98+83=180", "181", False),
        ("-5", "-5", True),
        ("5", "-5", False),
        ("3-8=-5", "-5", True),
        ("1,234", "1234", True),
        ("１８１", "181", True),
        ("I don't know", "181", False),
        ("181", "no number", False),
        # Word-problem answers: GSM8K's #### N, \boxed, Math23K fractions and percentages.
        ("Step 1 ... #### 18", "#### 18", True),
        ("The answer is 18.", "18", True),
        ("#### 17", "18", False),
        ("\\boxed{0.75}", "3/4", True),
        ("3/4", "((3)/(4))", True),
        ("0.33", "1/3", True),  # a decimal with at least two places that rounds to it
        ("0.333", "1/3", True),
        ("0.3", "1/3", False),  # one place is not enough for a fraction answer
        ("0.34", "1/3", False),
        ("2/6", "1/3", True),  # fractions by value
        ("22/3", "7((1)/(3))", True),
        ("7.33", "7((1)/(3))", True),
        ("0.4", "40%", True),
        ("40%", "40%", True),
        ("41%", "40%", False),
        ("$1,800", "1800", True),
        # Quotient and remainder: both must match; a bare quotient means remainder 0.
        ("3 R 2", "3 R 2", True),
        ("17/5=3 R 2", "3 R 2", True),
        ("3R2", "3 R 2", True),
        ("3 R 1", "3 R 2", False),
        ("2 R 2", "3 R 2", False),
        ("3", "3 R 2", False),  # the remainder is part of the answer
        ("3", "3 R 0", True),
        ("3.4", "3 R 2", False),
        ("no idea", "3 R 2", False),
        # Worked products answer with the value after the last "=".
        ("47*80+47*6=3760+282=4042", "4042", True),
        ("47*80+47*6=3760+282=4041", "4042", False),
    ],
)
def test_matches_value(prediction, reference, ok):
    assert matches_value(prediction, reference) is ok


def test_is_correct_text_mode_compares_stripped_text():
    assert is_correct("  cat\n", "cat", numeric=False)
    assert not is_correct("Cat", "cat", numeric=False)
    assert not is_correct("181.0", "181", numeric=False)  # text mode: no value comparison
    assert is_correct("181.0", "181", numeric=True)


def test_summarize_overall_and_per_category():
    correct = [True, False, True, True, False, True]
    cats = ["sub_int_2d2d", "add_int_2d2d", "add_int_2d2d", "add_int_1d1d", "sub_int_2d2d", "add_int_2d2d"]
    out = summarize(correct, cats)
    assert out["n"] == 6
    assert out["exact_match"] == pytest.approx(4 / 6)
    assert list(out["by_category"]) == ["add_int_1d1d", "add_int_2d2d", "sub_int_2d2d"]  # sorted
    assert out["by_category"] == {
        "add_int_1d1d": {"exact_match": 1.0, "n": 1},
        "add_int_2d2d": {"exact_match": pytest.approx(2 / 3), "n": 3},
        "sub_int_2d2d": {"exact_match": 0.5, "n": 2},
    }


def test_summarize_edge_cases():
    assert summarize([], []) == {"exact_match": 0.0, "n": 0, "by_category": {}}
    with pytest.raises(ValueError):  # one category per result, or the groups would be wrong
        summarize([True, False], ["a"])
