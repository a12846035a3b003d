"""Final answers in free text (GSM8K, \\boxed, Math23K forms) and matching them by value."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tasktune.data.answers import decimal_places, extract_answer, final_answer, parse_value, stated_answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),
        ("#### 1,800", "1800"),
        ("first #### 5 then #### 7", "7"),  # the last ####
        ("so the answer is \\boxed{42}. Check: 6*7=42, and 3", "42"),  # \boxed beats the last number
        ("\\boxed{\\frac{3}{4}}", "3/4"),
        ("\\boxed{\\dfrac{-1}{2}}", "-1/2"),
        ("\\boxed{x = {12}}", "12"),  # nested braces
        ("The total is 2 + 1 = 3 bolts.", "3"),
        ("答：一共需要１２．５元。", "12.5"),
        ("((31)/(2432))", "31/2432"),
        ("-((7)/(3))", "-7/3"),
        ("7((1)/(3))", "22/3"),  # Math23K mixed number: 7 1/3
        ("40%", "40%"),
        ("about 1/2 of them", "1/2"),
        ("nothing here", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "number, value",
    [("18", 18), ("-5", -5), ("8.4", Fraction(42, 5)), ("31/2432", Fraction(31, 2432)), ("22/3", Fraction(22, 3)),
     ("-7/3", Fraction(-7, 3)), ("40%", Fraction(2, 5)), ("1/0", None), ("x", None)],
)
def test_parse_value(number, value):
    assert parse_value(number) == value


def test_decimal_places():
    assert [decimal_places(x) for x in ("3", "8.40", "40%", "12.5%", "1/3")] == [0, 2, 2, 3, None]


@pytest.mark.parametrize(
    "output, answer",
    [
        ("8.40", "8.4"),  # a whole-number output (Math23K `ans`, arithmetic rows): canonical
        ("1,234", "1234"),
        ("-0", "0"),
        ("((3)/(10))", "3/10"),
        ("7((1)/(3))", "22/3"),
        ("40%", "40%"),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", "18"),
        ("The answer is \\boxed{5}.", "5"),
        ("减少空气污染的方法有很多，例如2种。", None),  # free text: compared as text
        ("1, 2, 3", None),  # several numbers are not one answer
        ("", None),
    ],
)
def test_stated_answer(output, answer):
    assert stated_answer(output) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("3-9=-6+10=4,4-2=2-1=1,8-1=7 #### 714", "714"),
        ("8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2", "17 R 2"),  # the whole answer, not its last number
        ("-(281-278):1-8=-7+10=3 #### -3", "-3"),
        ("98+83=181", "181"),  # no ####: the last number
        ("#### ", None),
        ("no number", None),
    ],
)
def test_final_answer(text, answer):
    assert final_answer(text) == answer
