"""tasktune.data.arithmetic: answers checked against an independent Fraction computation."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from fractions import Fraction
from itertools import islice

import pytest

from tasktune.config import ArithmeticConfig, DataConfig
from tasktune.data import build_datasets
from tasktune.data.arithmetic import (
    ZH_PAIRS,
    Problem,
    canonical,
    restore_answer,
    reverse_digits,
    eval_problems,
    worked_product,
    sample_problem,
    solve,
    to_example,
    train_problems,
)
from tasktune.data.worked import column_steps, division_steps, product_steps

PROBLEM = re.compile(r"^(\d+(?:\.\d+)?)([-+*/])(\d+(?:\.\d+)?)=$")


def _ref_text(value: Fraction) -> str:
    """Canonical text of a terminating fraction, written without Decimal."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest:  # terminates: only fractions with denominators 2^i 5^j come here
        rest *= 10
        digits += str(rest // value.denominator)
        rest %= value.denominator
        assert len(digits) < 60
    text = f"{whole}.{digits}" if digits else str(whole)
    return "0" if text == "0" else sign + text


def _ref_answer(a: str, op: str, b: str, division_places: int) -> str:
    """The reference value: exact with Fraction; division rounded half up (away from zero)."""
    fa, fb = Fraction(a), Fraction(b)
    if op == "+":
        return _ref_text(fa + fb)
    if op == "-":
        return _ref_text(fa - fb)
    if op == "*":
        return _ref_text(fa * fb)
    q = fa / fb
    scale = 10**division_places
    mag = abs(q) * scale
    rounded = int(mag) + (1 if mag - int(mag) >= Fraction(1, 2) else 0)
    return _ref_text(Fraction(rounded if q >= 0 else -rounded, scale))


def _examples(cfg: ArithmeticConfig, n: int, seed: int = 0):
    rng = random.Random(seed)
    return [to_example(sample_problem(rng, cfg), rng, cfg) for _ in range(n)]


ALL_OPS = {"+": 1, "-": 1, "*": 1, "/": 1}


@pytest.mark.parametrize(
    "cfg",
    [
        ArithmeticConfig(ops=ALL_OPS, digits=(1, 3)),
        ArithmeticConfig(ops=ALL_OPS, digits=(1, 3), decimal_share=1.0, decimal_places=2),
        ArithmeticConfig(ops=ALL_OPS, digits=(1, 2), decimal_share=0.5, decimal_places=3, division_places=3),
        # 18-digit operands: the product has up to 36 digits, beyond Decimal's default 28.
        ArithmeticConfig(ops=ALL_OPS, digits=(15, 18), decimal_share=0.5, decimal_places=2),
    ],
    ids=["int", "dec2", "dec3-div3", "18digits"],
)
def test_every_answer_equals_the_fraction_reference(cfg):
    ops_seen = set()
    for ex in _examples(cfg, 2000):
        m = PROBLEM.match(ex.prompt)
        assert m, ex.prompt
        a, op, b = m.groups()
        ops_seen.add(op)
        assert ex.answer == ex.response == _ref_answer(a, op, b, cfg.division_places), ex.prompt
    assert ops_seen == set("+-*/")


def test_decimal_operands_have_at_most_the_configured_places():
    cfg = ArithmeticConfig(ops=ALL_OPS, decimal_share=1.0, decimal_places=2)
    exs = _examples(cfg, 500)
    places = [len(x.split(".")[1]) for ex in exs for x in PROBLEM.match(ex.prompt).groups()[::2] if "." in x]
    assert places and max(places) == 2
    assert sum("." in ex.prompt for ex in exs) > 400  # trailing zeros dropped only rarely (12.50 -> 12.5)


@pytest.mark.parametrize(
    "a, op, b, expected",
    [
        ("3", "-", "8", "-5"),
        ("10", "/", "3", "3.33"),
        ("2", "/", "3", "0.67"),
        ("1", "/", "8", "0.13"),  # 0.125: half rounds up
        ("-1", "/", "8", "-0.13"),  # ... and away from zero for negatives
        ("21", "/", "2.5", "8.4"),  # never 8.40
        ("4.2", "*", "2", "8.4"),
        ("0.5", "+", "0.5", "1"),  # never 1.0
        ("0", "-", "0", "0"),
        ("0", "*", "7.25", "0"),  # never -0 or 0.00
        ("0.01", "/", "100", "0"),  # 0.0001 rounds to 0, not 0.00
        ("12", "/", "4", "3"),
        ("1000000", "*", "1000000", "1000000000000"),  # no exponent
    ],
)
def test_canonical_form(a, op, b, expected):
    assert canonical(solve(Problem(Decimal(a), op, Decimal(b)), 2)) == expected
    assert expected == _ref_answer(a, op, b, 2)


def test_canonical_never_writes_exponent_trailing_zero_or_negative_zero():
    assert canonical(Decimal("8.40")) == "8.4"
    assert canonical(Decimal("12.0")) == "12"
    assert canonical(Decimal("-0.00")) == "0"
    assert canonical(Decimal("1E+3")) == "1000"
    assert canonical(Decimal("1E-7")) == "0.0000001"
    assert canonical(Decimal("-5")) == "-5"


def test_subtraction_keeps_negative_answers():
    cfg = ArithmeticConfig(ops={"-": 1}, digits=(1, 2))
    answers = [ex.answer for ex in _examples(cfg, 300)]
    assert any(a.startswith("-") for a in answers)
    assert all(a != "-0" for a in answers)


def _bare_data(**arith) -> DataConfig:
    return DataConfig(arithmetic=ArithmeticConfig(**arith))


@pytest.mark.parametrize("train_size", [None, 400])
def test_eval_problems_never_appear_in_training(train_size):
    cfg = DataConfig(arithmetic=ArithmeticConfig(ops=ALL_OPS, digits=(1, 2)), train_size=train_size)
    ds = build_datasets(cfg, n_eval=300, eval_seed=1234, seed=0)
    eval_prompts = {ex.prompt for ex in ds.eval}
    assert len(eval_prompts) == len(ds.eval) == 300  # distinct
    train_prompts = [ex.prompt for ex in islice(ds.train, 5000)]
    assert not eval_prompts & set(train_prompts)
    if train_size is not None:
        assert ds.train_size == train_size == len(set(train_prompts))  # epochs of a fixed set


def test_disjointness_is_by_value_not_by_text():
    # 1.50 and 1.5 are one problem: an eval 1.5+2 must exclude a training 1.50+2.
    cfg = ArithmeticConfig(ops={"+": 1}, digits=(1, 1), decimal_share=1.0, decimal_places=2)
    held = eval_problems(cfg, 200, seed=3)
    exclude = {p.key for p in held}
    assert Problem(Decimal("1.50"), "+", Decimal("2")).key == Problem(Decimal("1.5"), "+", Decimal("2.00")).key
    for p in islice(train_problems(cfg, 0, exclude), 3000):
        assert p.key not in exclude


def test_same_seed_same_problems_other_seed_others():
    cfg = _bare_data(ops=ALL_OPS, digits=(1, 3))
    one = build_datasets(cfg, 50, eval_seed=7, seed=1)
    two = build_datasets(cfg, 50, eval_seed=7, seed=1)
    assert one.eval == two.eval
    assert list(islice(one.train, 100)) == list(islice(two.train, 100))
    other = build_datasets(cfg, 50, eval_seed=8, seed=2)
    assert other.eval != one.eval
    assert list(islice(other.train, 100)) != list(islice(two.train, 100))
    # The eval set depends on eval_seed only, never on the training seed.
    assert build_datasets(cfg, 50, eval_seed=7, seed=99).eval == one.eval


def test_zh_pairs_prompts_and_equation_answers():
    cfg = ArithmeticConfig(ops={"+": 1}, digits=(1, 2), prompt_format="zh_pairs", answer_format="equation")
    shape = re.compile(r"^(\S+): ((\d+)\+(\d+)=) (\S+):$")
    pairs_seen = set()
    for ex in _examples(cfg, 400):
        m = shape.match(ex.prompt)
        assert m, ex.prompt
        ask, text, a, b, reply = m.groups()
        assert (ask, reply) in ZH_PAIRS
        pairs_seen.add((ask, reply))
        assert ex.answer == str(int(a) + int(b))
        assert ex.response == f"{text}{ex.answer}"  # e.g. 98+83=181
    assert pairs_seen == set(ZH_PAIRS)


def test_zh_pairs_example_shape():
    cfg = ArithmeticConfig(prompt_format="zh_pairs", answer_format="equation")

    class Fixed(random.Random):  # picks 简便运算/剖析, the sixth pair
        def choice(self, seq):
            return seq[5]

    ex = to_example(Problem(Decimal(98), "+", Decimal(83)), Fixed(), cfg)
    assert ex.prompt == "简便运算: 98+83= 剖析:"
    assert ex.response == "98+83=181"
    assert ex.answer == "181"
    assert ex.category == "add_int_2d2d"


@pytest.mark.parametrize("sampling", ["uniform", "per_digits"])
def test_digit_ranges_are_respected(sampling):
    cfg = ArithmeticConfig(ops=ALL_OPS, digits=(3, 4), digits_b=(1, 1), digit_sampling=sampling)
    rng = random.Random(0)
    lens_a = set()
    for _ in range(2000):
        p = sample_problem(rng, cfg)
        assert 100 <= p.a <= 9999
        assert 0 <= p.b <= 9
        assert not (p.op == "/" and p.b == 0)
        lens_a.add(len(str(p.a)))
    assert lens_a == {3, 4}


def test_per_digits_sampling_balances_digit_counts():
    cfg = ArithmeticConfig(digits=(1, 4), digit_sampling="per_digits")
    rng = random.Random(0)
    counts = {n: 0 for n in range(1, 5)}
    for _ in range(4000):
        counts[len(str(sample_problem(rng, cfg).a))] += 1
    assert all(800 < c < 1200 for c in counts.values()), counts  # ~1000 each; uniform gives ~9 one-digit


def test_too_small_problem_space_raises_a_clear_error():
    # digits (1, 1) with + only: 100 distinct problems.
    cfg = _bare_data(ops={"+": 1}, digits=(1, 1))
    with pytest.raises(ValueError, match=r"eval\.max_examples=150: only 100 distinct problems.*widen data\.arithmetic\.digits"):
        build_datasets(cfg, n_eval=150, eval_seed=0, seed=0)
    small = DataConfig(arithmetic=cfg.arithmetic, train_size=80)  # 100 - 50 held out = 50 left
    with pytest.raises(ValueError, match=r"data\.train_size=80: only 50 distinct problems remain outside the eval set"):
        build_datasets(small, n_eval=50, eval_seed=0, seed=0)


def test_reversed_answers_train_digits_backwards_and_restore_to_the_value():
    cfg = ArithmeticConfig(ops={"+": 1, "-": 1}, digits=(1, 2), answer_format="reversed", decimal_share=0.5)
    rng = random.Random(0)
    for problem in eval_problems(cfg, 200, seed=3):
        example = to_example(problem, rng, cfg)
        sign = "-" if example.answer.startswith("-") else ""
        assert example.response == sign + example.answer[len(sign):][::-1]
        assert restore_answer(example.response, cfg) == example.answer
    assert reverse_digits("-64") == "-46" and reverse_digits("12.5") == "5.21" and reverse_digits("0") == "0"
    assert restore_answer("181", ArithmeticConfig()) == "181"  # value format: shown as is


def test_remainder_division_answers_quotient_and_remainder():
    cfg = ArithmeticConfig(ops={"/": 1}, digits=(1, 2), division="remainder", decimal_share=0.3)
    seen_int = seen_dec = 0
    for ex in _examples(cfg, 1000):
        a, _, b = PROBLEM.match(ex.prompt).groups()
        if "." in a + b:  # decimal operands keep the rounded quotient
            seen_dec += 1
            assert ex.answer == _ref_answer(a, "/", b, cfg.division_places)
            continue
        seen_int += 1
        q, r = (int(x) for x in re.fullmatch(r"(\d+) R (\d+)", ex.response).groups())
        assert q * int(b) + r == int(a) and 0 <= r < int(b), ex.prompt
        assert ex.answer == ex.response
    assert seen_int > 500 and seen_dec > 200


def test_spaced_answers_put_one_digit_per_word_and_restore_to_the_value():
    cfg = ArithmeticConfig(ops=ALL_OPS, digits=(1, 3), answer_format="spaced", decimal_share=0.5)
    for ex in _examples(cfg, 500):
        assert all(len(word) == 1 for word in ex.response.split(" ")), ex.response
        assert restore_answer(ex.response, cfg) == ex.answer
    remainder = ArithmeticConfig(ops={"/": 1}, answer_format="spaced", division="remainder")
    ex = to_example(Problem(Decimal(123), "/", Decimal(10)), random.Random(0), remainder)
    assert ex.response == "1 2 R 3" and restore_answer(ex.response, remainder) == "12 R 3"


def test_worked_products_sum_partial_products_to_the_product():
    cfg = ArithmeticConfig(ops={"*": 1, "+": 1}, digits=(1, 3), answer_format="steps")
    worked = 0
    for ex in _examples(cfg, 1000):
        a, op, b = PROBLEM.match(ex.prompt).groups()
        assert ex.answer == _ref_answer(a, op, b, 2)
        if "=" not in ex.response:
            assert ex.response == ex.answer  # +, a 1-digit factor or one nonzero digit
            continue
        worked += 1
        terms, products, total = ex.response.split("=")
        pairs = [t.split("*") for t in terms.split("+")]
        assert all(x == a for x, _ in pairs) and sum(int(y) for _, y in pairs) == int(b)
        assert [int(x) * int(y) for x, y in pairs] == [int(v) for v in products.split("+")]
        assert total == ex.answer
    assert worked > 200
    assert worked_product(Problem(Decimal(47), "*", Decimal(86))) == "47*80+47*6=3760+282=4042"
    assert worked_product(Problem(Decimal(47), "*", Decimal(80))) is None


@pytest.mark.parametrize(
    "a, op, b, borrow, sign, expected",
    [
        ("967", "+", "921", "signed", "first", "7+1=8,6+2=8,9+9=18 #### 1888"),
        ("196", "+", "599", "signed", "first", "6+9=15,9+9+1=19,1+5+1=7 #### 795"),
        ("7", "+", "363", "signed", "first", "7+3=10,0+6+1=7,0+3=3 #### 370"),  # the short operand padded with 0
        ("843", "-", "129", "signed", "first", "3-9=-6+10=4,4-1-2=1,8-1=7 #### 714"),
        ("843", "-", "129", "inline", "first", "13-9=4,4-1-2=1,8-1=7 #### 714"),
        ("843", "-", "839", "signed", "first", "3-9=-6+10=4,4-1-3=0,8-8=0 #### 4"),
        ("278", "-", "281", "signed", "first", "-(281-278):1-8=-7+10=3,8-1-7=0,2-2=0 #### -3"),
        ("278", "-", "281", "signed", "last",
         "8-1=7,7-8=-1+10=9,2-1-2=-1<0,-(281-278):1-8=-7+10=3,8-1-7=0,2-2=0 #### -3"),
        ("12.34", "+", "5.6", "signed", "first", "4+0=4,3+6=9,2+5=7,1+0=1 #### 17.94"),  # aligned on the point
        ("5.6", "-", "12.34", "signed", "first", "-(12.34-5.6):4-0=4,3-6=-3+10=7,2-1-5=-4+10=6,1-1-0=0 #### -6.74"),
        # every place of the columns kept: no trailing zero for the model to drop
        ("48.48", "+", "68.62", "signed", "first", "8+2=10,4+6+1=11,8+8+1=17,4+6+1=11 #### 117.10"),
        ("0.5", "-", "0.5", "signed", "first", "5-5=0 #### 0.0"),
        ("0.5", "+", "0.5", "signed", "first", "5+5=10 #### 1.0"),
    ],
)
def test_column_steps(a, op, b, borrow, sign, expected):
    assert column_steps(Decimal(a), op, Decimal(b), borrow, sign, carry_in="fused") == expected


@pytest.mark.parametrize(
    "a, op, b, expected",
    [
        ("819", "+", "354", "9+4=13|3,1+5=6+1=7|73,8+3=11|1173 #### 1173"),  # the top column keeps its carry
        ("649", "-", "161", "6-1=5:9-1=8|8,4-6=-2+10=8|88,6-1=5-1=4|488 #### 488"),
        ("302", "-", "295", "3-2=1:2-5=-3+10=7|7,0-9=-9-1=-10+10=0|07,3-2=1-1=0|007 #### 7"),
        ("278", "-", "281", "2-2=0,7-8=-1:-(281-278):1-8=-7+10=3|3,8-7=1-1=0|03,2-2=0|003 #### -3"),
        ("12.34", "+", "5.6", "4+0=4|4,3+6=9|94,2+5=7|7.94,1+0=1|17.94 #### 17.94"),  # the point once passed
    ],
)
def test_digits_so_far_follow_each_column(a, op, b, expected):
    assert column_steps(Decimal(a), op, Decimal(b), digits_so_far=True) == expected
    # Every step is still a true equation, and the steps are those written without them.
    from tasktune.eval.steps import check_steps

    plain = column_steps(Decimal(a), op, Decimal(b))
    assert [s.text for s in check_steps(expected)] == [s.text for s in check_steps(plain)]
    assert all(s.ok for s in check_steps(expected))


@pytest.mark.parametrize(
    "a, op, b, expected",
    [
        # + runs one column past both operands (restated 0+0, its carry in like any other's) and ends there.
        ("3518", "+", "7937", "3518+7937:8+7=15,351+793:1+3=4+1=5,35+79:5+9=14,3+7:3+7=10+1=11,0+0:0+0=0+1=1"
                              " #### 11455"),
        ("843", "-", "129", "8-1=7:843-129:3-9=-6+10=4,84-12:4-2=2-1=1,8-1:8-1=7,0-0 #### 714"),
        ("278", "-", "281", "2-2=0,7-8=-1:-(281-278):281-278:1-8=-7+10=3,28-27:8-7=1-1=0,2-2:2-2=0,0-0 #### -3"),
        ("7", "+", "46", "7+46:7+6=13,0+4:0+4=4+1=5,0+0:0+0=0 #### 53"),  # an operand used up is restated as 0
        ("100", "+", "5", "100+5:0+5=5,10+0:0+0=0,1+0:1+0=1,0+0:0+0=0 #### 105"),
        ("12.3", "+", "4.56", "1230+456:0+6=6,123+45:3+5=8,12+4:2+4=6,1+0:1+0=1,0+0:0+0=0 #### 16.86"),  # aligned on the point
    ],
)
def test_restate_writes_what_is_left_of_both_operands_before_each_column(a, op, b, expected):
    from tasktune.eval.steps import check_steps

    restated = column_steps(Decimal(a), op, Decimal(b), restate=True)
    assert restated == expected
    # The same true steps as without restatements (+ with one column more: its top carry, or 0);
    # the last digits of what is restated are the column's.
    plain = [s.text for s in check_steps(column_steps(Decimal(a), op, Decimal(b)))]
    past = ["0+0=0+1=1" if int(plain[-1].rsplit("=", 1)[1]) >= 10 else "0+0=0"] if op == "+" else []
    assert [s.text for s in check_steps(restated)] == plain + past
    for left, step in re.findall(r"(\d+[-+]\d+):(\d[-+]\d)", restated):
        x, y = re.split(r"[-+]", left)
        assert step[0] == x[-1] and step[2] == y[-1]


@pytest.mark.parametrize(
    "a, op, b, widths, expected",
    [
        (351, "+", 793, (4, 5),
         "0351+00793:1+3=4|4,035+0079:5+9=14|44,03+007:3+7=10+1=11|144,0+00:0+0=0+1=1|1144 #### 1144"),
        (5, "+", 7, (2, 2), "05+07:5+7=12|2,0+0:0+0=0+1=1|12 #### 12"),
        (351, "-", 793, (4, 5),
         "0-0=0,0-0=0,3-7=-4:-(00793-0351):00793-0351:3-1=2|2,0079-035:9-5=4|42,007-03:7-3=4|442,00-0 #### -442"),
        (7, "-", 36, (3, 0), "0-0=0,0-3=-3:-(36-007):36-007:6-7=-1+10=9|9,3-00:3-0=3-1=2|29,0-0 #### -29"),
    ],
)
def test_padded_operands_keep_their_zeros_wherever_they_are_written_again(a, op, b, widths, expected):
    from tasktune.eval.steps import check_steps

    padded = column_steps(Decimal(a), op, Decimal(b), sign="compare", digits_so_far=True, restate=True, widths=widths)
    assert padded == expected
    plain = column_steps(Decimal(a), op, Decimal(b), sign="compare", digits_so_far=True, restate=True)
    # The same columns and values as unpadded: only what is written again carries the zeros.
    def strip(text: str) -> str:
        return re.sub(r"\b0+(?=\d)", "", text.split(":", 1)[1])

    assert strip(padded) == strip(plain)
    assert all(s.ok for s in check_steps(padded))


@pytest.mark.parametrize("other", [{"answer_format": "value"}, {"sign": "last"}])
def test_restate_is_refused_where_it_cannot_apply(other):
    columns = {"answer_format": "columns"}
    assert any("restate" in p for p in ArithmeticConfig(restate=True, **{**columns, **other}).problems())
    assert not ArithmeticConfig(restate=True, **columns).problems()


def test_chained_carries_are_facts_of_their_own():
    assert column_steps(Decimal(196), "+", Decimal(599)) == "6+9=15,9+9=18+1=19,1+5=6+1=7 #### 795"
    assert column_steps(Decimal(402), "-", Decimal(199), sign="first") == "2-9=-7+10=3,0-9=-9-1=-10+10=0,4-1=3-1=2 #### 203"
    assert column_steps(Decimal(278), "-", Decimal(281), sign="first") == "-(281-278):1-8=-7+10=3,8-7=1-1=0,2-2=0 #### -3"


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (667, 684, "6-6=0,6-8=-2:-(684-667):4-7=-3+10=7,8-6=2-1=1,6-6=0 #### -17"),
        (302, 295, "3-2=1:2-5=-3+10=7,0-9=-9-1=-10+10=0,3-2=1-1=0 #### 7"),
        (894, 95, "8-0=8:4-5=-1+10=9,9-9=0-1=-1+10=9,8-0=8-1=7 #### 799"),  # 95 padded: 095
        (7, 363, "0-3=-3:-(363-7):3-7=-4+10=6,6-0=6-1=5,3-0=3 #### -356"),
        (43, 43, "4-4=0,3-3=0:3-3=0,4-4=0 #### 0"),
    ],
)
def test_sign_compare_writes_the_leading_differences_first(a, b, expected):
    assert column_steps(Decimal(a), "-", Decimal(b), sign="compare") == expected


@pytest.mark.parametrize("borrow", ["signed", "inline"])
@pytest.mark.parametrize("sign", ["first", "compare", "last"])
@pytest.mark.parametrize("carry_in, so_far", [("fused", False), ("chained", False), ("chained", True)])
def test_column_answers_end_with_the_fraction_reference(borrow, sign, carry_in, so_far):
    """Every column answer ends with the exact value, and every step in it is true."""
    from tasktune.eval.steps import check_steps

    cfg = ArithmeticConfig(ops=ALL_OPS, digits=(1, 4), decimal_share=0.3, answer_format="columns",
                           borrow=borrow, sign=sign, carry_in=carry_in, digits_so_far=so_far,
                           division="remainder")
    for ex in _examples(cfg, 1500):
        a, op, b = PROBLEM.match(ex.prompt).groups()
        if op == "/" and "." not in a + b:
            q, r = divmod(int(a), int(b))
            assert ex.answer == f"{q} R {r}"
        else:
            assert ex.answer == _ref_answer(a, op, b, 2)
        if op in "*/" and "." in a + b:
            assert ex.response == ex.answer  # no steps for a decimal product or quotient
            continue
        assert " #### " in ex.response, ex.response
        final = ex.response.rsplit(" #### ", 1)[1]  # 117.10 for 117.1: the columns' places kept
        assert final == ex.answer or (" R " not in final and Decimal(final) == Decimal(ex.answer)), ex.response
        steps = check_steps(ex.response)
        assert steps and all(s.ok for s in steps), ex.response
        if so_far and op in "+-":  # the digits after the last column are the value
            assert Decimal(ex.response.split(" #### ")[0].rsplit("|", 1)[1]) == abs(Decimal(final)), ex.response


@pytest.mark.parametrize(
    "a, op, b, expected",
    [
        (47, "*", 86, "7*6=42,4*6=24+4=28,7*8=56,4*8=32+5=37;282+3760:2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042"),
        (47, "*", 80, "7*8=56,4*8=32+5=37 #### 3760"),  # a zero digit gives no partial product
        (0, "*", 0, "0*0=0 #### 0"),
        (87, "/", 5, "8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2"),
        (87, "/", 23, "87-23*3=87-69=18 #### 3 R 18"),
        (3, "/", 7, "3-7*0=3-0=3 #### 0 R 3"),
    ],
)
def test_worked_products_and_long_division(a, op, b, expected):
    got = product_steps(a, b) if op == "*" else division_steps(a, b)
    assert got == expected


@pytest.mark.parametrize(
    "work, style, a, b, expected",
    [
        # Division by subtraction rounds (a divisor of two digits or more).
        (division_steps, "subtract", 57, 23,
            "57-23:5-2=3:7-3=4,5-2=3|1;34-23:3-2=1:4-3=1,3-2=1|2;11-23:1-2=-1 #### 2 R 11"),
        (division_steps, "subtract", 41, 23,
            "41-23:4-2=2:1-3=-2+10=8,4-2=2-1=1|1;18-23:1-2=-1 #### 1 R 18"),  # a borrow
        (division_steps, "subtract", 5, 23, "5-23:0-2=-2 #### 0 R 5"),  # does not fit: the comparison alone
        (division_steps, "subtract", 23, 23, "23-23:2-2=0,3-3=0:3-3=0,2-2=0|1;0-23:0-2=-2 #### 1 R 0"),
        (division_steps, "subtract", 9, 14, "9-14:0-1=-1 #### 0 R 9"),
        (division_steps, "subtract", 99, 10,
            "99-10:9-1=8:9-0=9,9-1=8|1;89-10:8-1=7:9-0=9,8-1=7|2;79-10:7-1=6:9-0=9,7-1=6|3;"
            "69-10:6-1=5:9-0=9,6-1=5|4;59-10:5-1=4:9-0=9,5-1=4|5;49-10:4-1=3:9-0=9,4-1=3|6;"
            "39-10:3-1=2:9-0=9,3-1=2|7;29-10:2-1=1:9-0=9,2-1=1|8;19-10:1-1=0,9-0=9:9-0=9,1-1=0|9;"
            "9-10:0-1=-1 #### 9 R 9"),
        # A one-digit divisor: a stage for every digit of the dividend, the divisor taken
        # away one fact a round, the rounds counted, until a round comes out negative.
        (division_steps, "subtract", 87, 5,
            "8-5=3|1,3-5=-2;37-5=32|1,32-5=27|2,27-5=22|3,22-5=17|4,17-5=12|5,12-5=7|6,7-5=2|7,2-5=-3 #### 17 R 2"),
        (division_steps, "subtract", 37, 5,  # the tens do not fit: their stage is still written
            "3-5=-2;37-5=32|1,32-5=27|2,27-5=22|3,22-5=17|4,17-5=12|5,12-5=7|6,7-5=2|7,2-5=-3 #### 7 R 2"),
        (division_steps, "subtract", 40, 4, "4-4=0|1,0-4=-4;0-4=-4 #### 10 R 0"),  # a stage of no rounds: digit 0
        (division_steps, "subtract", 3, 7, "3-7=-4 #### 0 R 3"),
        # Products by the product's own columns.
        (product_steps, "columns", 47, 86, "7*6=42,4*6=24,7*8=56,24+56=80+4=84,4*8=32+8=40 #### 4042"),
        (product_steps, "columns", 7, 86, "7*6=42,7*8=56+4=60 #### 602"),  # one product a column: its carry chained on
        (product_steps, "columns", 47, 80, "7*0=0,4*0=0,7*8=56,0+56=56,4*8=32+5=37 #### 3760"),
        (product_steps, "columns", 99, 99,
            "9*9=81,9*9=81,9*9=81,81+81=162+8=170,9*9=81+17=98 #### 9801"),  # a 2-digit carry
        (product_steps, "columns", 123, 45,
            "3*5=15,2*5=10,3*4=12,10+12=22+1=23,1*5=5,2*4=8,5+8=13+2=15,1*4=4+1=5 #### 5535"),
        # Marked partial products: every digit, each partial's value in place.
        (product_steps, "marked", 47, 86,
            "7*6=42,4*6=24+4=28|282,7*8=56,4*8=32+5=37|3760:2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042"),
        (product_steps, "marked", 47, 80,
            "7*0=0,4*0=0|0,7*8=56,4*8=32+5=37|3760:0+0=0,0+6=6,0+7=7,0+3=3 #### 3760"),  # zero digit too
        (product_steps, "marked", 7, 54, "7*4=28|28,7*5=35|350:8+0=8,2+5=7,0+3=3 #### 378"),
        (product_steps, "marked", 98, 7, "7*98:7*8=56|56,7*9=63|630:6+0=6,5+3=8,0+6=6 #### 686"),  # shorter on top
        # Placed: no carry added into a product; each product added in its place by columns.
        (product_steps, "placed", 47, 86,
            "7*6=42,4*6=24:2+0=2,4+4=8,0+2=2|282,7*8=56,4*8=32:6+0=6,5+2=7,0+3=3|3760:"
            "2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042"),
        (product_steps, "placed", 95, 6, "6*95:6*5=30|30,6*9=54|540:0+0=0,3+4=7,0+5=5 #### 570"),
        (product_steps, "placed", 4, 123, "4*3=12|12,4*2=8|80:2+0=2,1+8=9|92,4*1=4|400:2+0=2,9+0=9,0+4=4 #### 492"),
        (product_steps, "marked", 45, 123,
            "5*3=15,4*3=12+1=13|135,5*2=10,4*2=8+1=9|900:5+0=5,3+0=3,1+9=10|1035,5*1=5,4*1=4|4500:"
            "5+0=5,3+0=3,0+5=5,1+4=5 #### 5535"),
    ],
)
def test_step_styles_write_true_small_facts(work, style, a, b, expected):
    from tasktune.eval.steps import check_steps

    got = work(a, b, style=style)
    assert got == expected
    assert all(s.ok for s in check_steps(got))


def test_product_and_division_styles_are_task_options():
    cfg = ArithmeticConfig(ops={"*": 1, "/": 1}, digits=(1, 2), answer_format="columns", division="remainder",
                           product_steps="columns", division_steps="subtract")
    for ex in _examples(cfg, 200):
        a, op, b = PROBLEM.match(ex.prompt).groups()
        work = product_steps if op == "*" else division_steps
        assert ex.response == work(int(a), int(b), style="columns" if op == "*" else "subtract")
    with pytest.raises(ValueError, match="'long' or 'subtract'"):
        division_steps(7, 2, style="guess")
    with pytest.raises(ValueError, match="'partials', 'marked', 'placed' or 'columns'"):
        product_steps(7, 2, style="guess")


def test_column_steps_refuse_what_they_cannot_work():
    with pytest.raises(ValueError, match="non-negative"):
        column_steps(Decimal(-1), "+", Decimal(2))
    with pytest.raises(ValueError, match="not '\\*'"):
        column_steps(Decimal(1), "*", Decimal(2))
    with pytest.raises(ValueError, match="b > 0"):
        division_steps(5, 0)


def test_training_digit_sampling_leaves_the_held_out_set_alone():
    base = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3)))
    short = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3), train_digit_sampling="per_digits"))
    one, two = build_datasets(base, 200, 7, 0), build_datasets(short, 200, 7, 0)
    assert one.eval == two.eval

    def short_share(ds):
        return sum(len(x) < 3 for e in islice(ds.train, 1000) for x in PROBLEM.match(e.prompt).groups()[::2]) / 2000

    assert short_share(one) < 0.15 and short_share(two) > 0.5  # uniform: ~10% of operands; per_digits: ~2/3


def test_point_share_puts_a_point_into_training_operands_and_keeps_their_digits():
    plain = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3)))
    pointed = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3), train_point_share=0.5, answer_format="columns",
                                                     restate=True))
    one, two = build_datasets(plain, 200, 7, 0), build_datasets(pointed, 200, 7, 0)
    assert [e.prompt for e in one.eval] == [e.prompt for e in two.eval]  # held-out problems never
    assert not any("." in e.prompt for e in one.eval + list(islice(one.train, 500)))
    rows = list(islice(two.train, 1000))
    with_point = [e for e in rows if "." in e.prompt]
    assert 0.35 < len(with_point) / len(rows) < 0.55  # half, less the one-digit pairs that cannot take a point
    for e in with_point:
        a, op, b = PROBLEM.match(e.prompt).groups()
        assert max(len(a.replace(".", "")), len(b.replace(".", ""))) <= 3  # no operand longer than 3 digits
        assert Decimal(e.answer) == (Decimal(a) + Decimal(b) if op == "+" else Decimal(a) - Decimal(b))
    # Aligned on the point, some procedures run more columns than any operand has digits.
    echoes = [e.response.split(":")[0].split("+") for e in with_point if "+" in e.prompt]  # `6740+617`
    assert any(max(len(x), len(y)) > 3 for x, y in echoes)


def test_pad_share_writes_training_operands_with_leading_zeros_and_keeps_their_values():
    plain = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3)))
    padded = DataConfig(arithmetic=ArithmeticConfig(digits=(1, 3), train_pad_share=0.5, answer_format="columns",
                                                    restate=True, digits_so_far=True))
    one, two = build_datasets(plain, 200, 7, 0), build_datasets(padded, 200, 7, 0)
    assert [e.prompt for e in one.eval] == [e.prompt for e in two.eval]  # held-out problems never
    assert [e.prompt for e in islice(one.train, 50)] != [e.prompt for e in islice(two.train, 50)]
    rows = list(islice(two.train, 1000))
    zeros = [e for e in rows if re.search(r"(^|[-+])0\d", e.prompt)]
    assert 0.4 < len(zeros) / len(rows) < 0.6
    for e in zeros:
        a, op, b = PROBLEM.match(e.prompt).groups()
        assert max(len(a), len(b)) <= 5 and max(len(str(int(a))), len(str(int(b)))) <= 3  # values of 3 digits at most
        assert int(e.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert f"{a}{op}{b}:" in e.response or f"({b}-{a})" in e.response  # restated as written


def test_close_share_draws_near_equal_training_subtractions_only():
    plain = DataConfig(arithmetic=ArithmeticConfig(digits=(3, 3)))
    close = DataConfig(arithmetic=ArithmeticConfig(digits=(3, 3), train_close_share=1.0))
    one, two = build_datasets(plain, 200, 7, 0), build_datasets(close, 200, 7, 0)
    assert one.eval == two.eval

    def shared_lead(ds):
        pairs = [PROBLEM.match(e.prompt).groups() for e in islice(ds.train, 1000)]
        subs = [(a, b) for a, op, b in pairs if op == "-"]
        return sum(a[0] == b[0] for a, b in subs) / len(subs), sum(a[:2] == b[:2] for a, b in subs) / len(subs)

    first, two_digits = shared_lead(one)
    assert first < 0.2 and two_digits < 0.05  # uniform: about 1 in 9 and 1 in 90
    first, two_digits = shared_lead(two)
    assert first == 1.0 and two_digits > 0.4  # the last 1 or 2 digits drawn again


@pytest.mark.parametrize("fmt", ["reversed", "spaced", "value", "columns", "equation"])
def test_learned_answer_undoes_restore_answer_for_every_answer_format(fmt):
    from tasktune.data.arithmetic import learned_answer

    cfg = ArithmeticConfig(answer_format=fmt, ops={"+": 1, "-": 1, "/": 1}, division="remainder", decimal_share=0.3)
    rng = random.Random(3)
    for _ in range(200):
        example = to_example(sample_problem(rng, cfg), rng, cfg)
        shown = restore_answer(example.response, cfg)
        assert learned_answer(shown, cfg) == example.response, (fmt, example.response, shown)
    assert learned_answer("Hello there", cfg) == "Hello there"  # not a value: as it is
