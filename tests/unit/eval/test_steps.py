"""The step verifier: steps checked by exact value, and the first wrong step classified."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from tasktune.data.worked import column_steps
from tasktune.eval.steps import check_steps, first_wrong_step, step_figures, summarize_steps


@pytest.mark.parametrize(
    "text, oks",
    [
        ("7+1=8,6+2=8,9+9=18 #### 1888", [True, True, True]),
        ("6+9=15,9+9+1=18,1+5+1=7 #### 785", [True, False, True]),
        ("3-9=-6+10=4,4-1-2=1,8-1=7 #### 714", [True, True, True]),  # runs on from -6
        ("3-9=-5+10=5 #### 5", [False]),  # -5 is not 3-9
        ("3-9=-6+10=5 #### 5", [False]),
        ("47*80+47*6=3760+282=4042", [True]),  # every side equal (Goat)
        ("She makes 9 * 2 = $<<9*2=18>>18 every day. 48/2 = <<48/2=24>>24.\n#### 18", [True, True]),
        ("1.5+2.25=3.75. Then 07+1=8", [True, True]),  # a full stop ends a sentence; 07 is 7
        ("3-9=", []),  # cut off: no second side, no step
        ("2/0=1", [False]),
        ("no steps here #### 5", []),
    ],
)
def test_check_steps(text, oks):
    assert [s.ok for s in check_steps(text)] == oks


def test_the_final_answer_is_not_a_step():
    assert check_steps("1+1=2 #### 2=2") == check_steps("1+1=2")


@pytest.mark.parametrize(
    "prediction, reference, kind, index",
    [
        ("6+9=15,9+9=18,1+5+1=7 #### 785", "6+9=15,9+9+1=19,1+5+1=7 #### 795", "carry", 1),
        ("3-9=-6,4-2=2 #### 26", "3-9=-6+10=4,4-1-2=1 #### 14", "borrow", 0),  # the ten not borrowed
        ("3-9=-6+10=4,4-2=2 #### 24", "3-9=-6+10=4,4-2=2-1=1 #### 14", "borrow", 1),  # chained: not paid back
        ("9+9=18 #### 18", "9+9=18+1=19 #### 19", "carry", 0),
        ("4-2=2-1=2 #### 2", "4-2=2-1=1 #### 1", "fact", 0),
        ("3-9=-6+10=4,4-2=2 #### 24", "3-9=-6+10=4,4-1-2=1 #### 14", "borrow", 1),  # the borrow not paid back
        ("3-9=4 #### 4", "13-9=4 #### 4", "borrow", 0),  # inline notation
        ("7+2=9 #### 9", "7+1=8 #### 8", "copy", 0),
        ("7+1=9 #### 9", "7+1=8 #### 8", "fact", 0),
        ("-(281-278):1-8=-7+10=3 #### -3", "1-8=-7+10=3 #### 3", "sign", 0),
        ("7+1=8 #### 8", "7+1=8,6+2=8 #### 88", "missing", 1),
        ("7+1=8,6+2=8 #### 88", "7+1=8 #### 8", "extra", 1),
    ],
)
def test_first_wrong_step(prediction, reference, kind, index):
    error = first_wrong_step(prediction, reference)
    assert (error.kind, error.index) == (kind, index)


def test_all_steps_right_but_a_wrong_value_is_the_answer():
    assert first_wrong_step("7+1=8 #### 9", "7+1=8 #### 8", correct=False).kind == "answer"
    assert first_wrong_step("7+1=8 #### 8", "7+1=8 #### 8", correct=True) is None


def test_every_reference_column_answer_checks_out():
    """The verifier and the generator agree: every generated step is right by value,
    and a reference compared with itself has no wrong step."""
    rng = random.Random(0)
    # The edges (zeros, equal and near-equal operands, every column carrying or borrowing),
    # then operands drawn at random up to 4 digits.
    edges = [(0, 0), (0, 9999), (9999, 0), (9999, 9999), (1000, 999), (999, 1000), (5005, 5005), (1234, 1235), (10, 1)]
    pairs = edges + [(rng.randint(0, 9999), rng.randint(0, 9999)) for _ in range(400)]
    for a, b in ((Decimal(x), Decimal(y)) for x, y in pairs):
        for op in "+-":
            for borrow in ("signed", "inline"):
                for sign in ("first", "compare", "last"):
                    for carry_in in ("fused", "chained"):
                        text = column_steps(a, op, b, borrow, sign, carry_in)
                        assert all(s.ok for s in check_steps(text)), text
                        assert first_wrong_step(text, text, correct=True) is None


def test_figures_and_summary():
    ref = "6+9=15,9+9+1=19,1+5+1=7 #### 795"
    rows = [step_figures(ref, ref, True), step_figures("6+9=15,9+9=18,1+5+1=7 #### 785", ref, False),
            step_figures("795", "795", True)]
    assert rows[2] is None  # a plain value has no steps to check
    summary = summarize_steps(rows)
    assert summary["steps_written"] == 6
    assert summary["step_accuracy"] == pytest.approx(5 / 6)
    assert summary["all_steps_right"] == 0.5
    assert summary["first_wrong"] == {"carry": {"2": 1}}
    assert summarize_steps([None]) is None


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("-(281-278):1-8=-7+10=3 #### -3", "1-8=-7+10=3 #### 3"),  # decided negative first, wrongly
        ("1-8=-7+10=3 #### 3", "-(281-278):1-8=-7+10=3 #### -3"),
        # the top column borrowed where it had to turn the problem round
        ("8-1=7,7-8=-1+10=9,2-1-2=-1+10=9 #### 997",
         "8-1=7,7-8=-1+10=9,2-1-2=-1<0,-(281-278):1-8=-7+10=3,8-1-7=0,2-2=0 #### -3"),
        ("7+1=8 #### -8", "7+1=8 #### 8"),  # every step right, the sign of the value wrong
        ("6-6=0,6-8=2:8-4=4 #### 4", "6-6=0,6-8=-2:-(684-667):4-7=-3+10=7 #### -17"),  # a wrong leading difference
    ],
)
def test_sign_errors(prediction, reference):
    assert first_wrong_step(prediction, reference, correct=False).kind == "sign"


def test_a_wrongly_restated_partial_product_is_a_copy_error():
    ref = "2*1=2,9*1=9,2*5=10,9*5=45+1=46;92+4600:2+0=2,9+0=9,0+6=6,0+4=4 #### 4692"
    got = "2*1=2,9*1=9,2*5=10,9*5=45+1=46;92+460:2+0=2,9+6=15,0+4=4+1=5 #### 552"
    error = first_wrong_step(got, ref, correct=False)
    assert (error.kind, error.index) == ("copy", 4)
