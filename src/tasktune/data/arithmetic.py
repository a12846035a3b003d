"""The arithmetic task: + - * / problems generated from a seed and checked by value.

Answers are computed exactly with :mod:`decimal` and :mod:`fractions`, never floats.
Canonical number format (the rule every answer and operand follows):

* no exponent, no leading ``+``, no trailing zeros after the point, no bare point:
  ``8.4`` (never ``8.40`` or ``8.399999``), ``12`` (never ``12.0``);
* signs are kept: ``3-8=-5``; zero is ``0``, never ``-0``;
* division gives the exact quotient rounded half up to ``division_places``:
  ``10/3=3.33``, ``2/3=0.67``, ``-1/8=-0.13``; with ``division: remainder`` integer
  problems answer quotient and remainder instead: ``17/5=3 R 2``, ``15/5=3 R 0``.

Held-out problems are drawn first from their own seed; training problems skip any
(a, op, b) among them, so no eval problem is ever trained on.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from typing import Iterator

from tasktune.config import ArithmeticConfig
from tasktune.data.example import Example
from tasktune.data.worked import canonical, column_steps, division_steps, product_steps

__all__ = [
    "ZH_PAIRS",
    "Problem",
    "canonical",
    "solve",
    "sample_problem",
    "to_example",
    "prompt_style",
    "category",
    "reverse_digits",
    "restore_answer",
    "learned_answer",
    "reference_answer",
    "worked_product",
    "eval_problems",
    "train_problems",
    "longest_operand",
]

# The original tutorial's eight question/answer labels, one picked per example.
ZH_PAIRS: tuple[tuple[str, str], ...] = (
    ("问", "答"),
    ("问题", "答案"),
    ("计算", "回答"),
    ("计算题", "解答"),
    ("口算", "解"),
    ("简便运算", "剖析"),
    ("数学题", "点拨"),
    ("初等数学", "解析"),
)

OP_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@dataclass(frozen=True)
class Problem:
    """``a op b``; ``a`` and ``b`` carry their decimal places (Decimal('12.5')). ``widths``:
    integer operands written zero-padded to these widths (``0351+00793=``; training only),
    0 for none; the value, the key and the category ignore them."""

    a: Decimal
    op: str
    b: Decimal
    widths: tuple[int, int] = (0, 0)

    @property
    def text(self) -> str:
        return f"{canonical(self.a).zfill(self.widths[0])}{self.op}{canonical(self.b).zfill(self.widths[1])}="

    @property
    def key(self) -> tuple[Decimal, str, Decimal]:
        return (self.a.normalize(), self.op, self.b.normalize())


def solve(problem: Problem, division_places: int) -> Decimal:
    """Exact value of the problem; division is rounded half up to ``division_places``.

    Raises:
        ZeroDivisionError: division by zero (the generator never asks for it).
    """
    a, b = problem.a, problem.b
    # Exact sums and products: the default context keeps 28 significant digits, which
    # would round an 18-digit x 18-digit product; trap instead of rounding silently.
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        if problem.op == "+":
            return a + b
        if problem.op == "-":
            return a - b
        if problem.op == "*":
            return a * b
    if problem.op == "/":
        q = Fraction(a) / Fraction(b)
        exact = Decimal(q.numerator) / Decimal(q.denominator) if q.denominator == 1 else None
        if exact is not None:
            return exact
        # Round the exact fraction, not a float: scale, round half up, unscale.
        # Half up means away from zero (-1/8 = -0.125 -> -0.13): round the magnitude.
        scaled = abs(q) * 10**division_places
        floor = scaled.numerator // scaled.denominator
        rounded = floor + 1 if scaled - floor >= Fraction(1, 2) else floor
        return Decimal(-rounded if q < 0 else rounded).scaleb(-division_places)
    raise ValueError(f"unknown operation {problem.op!r}")


def _operand(rng: random.Random, digits: tuple[int, int], sampling: str, places: int) -> Decimal:
    lo, hi = digits
    if sampling == "mixed":
        sampling = "per_digits" if rng.random() < 0.5 else "uniform"
    if sampling == "per_digits":
        n = rng.randint(lo, hi)
        low = 0 if n == 1 else 10 ** (n - 1)
        integer = rng.randint(low, 10**n - 1)
    else:
        integer = rng.randint(0 if lo == 1 else 10 ** (lo - 1), 10**hi - 1)
    if places == 0:
        return Decimal(integer)
    frac = rng.randint(0, 10**places - 1)
    return Decimal(integer * 10**places + frac).scaleb(-places)


def sample_problem(rng: random.Random, cfg: ArithmeticConfig, close_share: float = 0.0) -> Problem:
    """Draw one problem: operation by its weight, then both operands; with probability
    ``close_share`` a subtraction's second operand is the first with its last digits
    drawn again (:func:`_close`)."""
    ops = list(cfg.ops)
    op = rng.choices(ops, weights=[cfg.ops[o] for o in ops])[0]
    places = cfg.decimal_places if rng.random() < cfg.decimal_share else 0
    # mixed_b: the first operand uniform, the second mixed (short divisors and factors).
    first, second = ("uniform", "mixed") if cfg.digit_sampling == "mixed_b" else (cfg.digit_sampling,) * 2
    a = _operand(rng, cfg.digits, first, places)
    b = _operand(rng, cfg.digits_b or cfg.digits, second, places)
    while op == "/" and b == 0:
        b = _operand(rng, cfg.digits_b or cfg.digits, second, places)
    # Drawn only when asked for, so that a run without it draws the same problems as before.
    if close_share and op == "-" and rng.random() < close_share:
        b = _close(rng, a)
    return Problem(a, op, b)


def _close(rng: random.Random, a: Decimal) -> Decimal:
    """``a`` with its last 1 to n-1 digits drawn again (n: its digits in all): a near-equal
    operand, whose difference with ``a`` is decided by the low columns (``673-678``)."""
    digits = str(a).replace(".", "")
    if len(digits) < 2:
        return a
    keep = rng.randint(1, len(digits) - 1)
    drawn = "".join(str(rng.randint(0, 9)) for _ in range(len(digits) - keep))
    places = max(-a.as_tuple().exponent, 0)
    return Decimal(int(digits[:keep] + drawn)).scaleb(-places)


def _pointed(rng: random.Random, problem: Problem) -> Problem:
    """``problem`` with a point put into each operand at a random place, its digits kept
    (``351+793`` -> ``3.51+79.3``); at least one operand of two digits or more gets one."""
    a, b = int(problem.a), int(problem.b)
    if max(a, b) < 10:
        return problem
    while True:
        pa, pb = rng.randint(0, len(str(a)) - 1), rng.randint(0, len(str(b)) - 1)
        if pa or pb:
            return Problem(Decimal(a).scaleb(-pa), problem.op, Decimal(b).scaleb(-pb))


def longest_operand(cfg: ArithmeticConfig) -> int:
    """Digits of the longest operand the settings draw (either operand's range)."""
    return max(cfg.digits[1], cfg.digits_b[1] if cfg.digits_b else 0)


def _padded(rng: random.Random, problem: Problem, longest: int) -> Problem:
    """``problem`` with each operand zero-padded to a width drawn from its own length to
    ``longest + 2`` (``351+793`` -> ``0351+00793``), at least one operand padded."""
    lengths = (_digits(problem.a), _digits(problem.b))
    while True:
        widths = tuple(rng.randint(n, longest + 2) for n in lengths)
        if widths != lengths:
            return replace(problem, widths=widths)


def _digits(value: Decimal) -> int:
    return len(str(int(abs(value))))


def category(problem: Problem) -> str:
    """Metric group: operation x integer/decimal x operand digits, e.g. ``add_int_2d1d``."""
    kind = "dec" if "." in problem.text else "int"
    return f"{OP_NAMES[problem.op]}_{kind}_{_digits(problem.a)}d{_digits(problem.b)}d"


def reverse_digits(text: str) -> str:
    """Digits least significant first, sign kept in front: ``-64`` <-> ``-46``,
    ``12.5`` <-> ``5.21``. Its own inverse."""
    text = text.strip()
    sign = "-" if text.startswith("-") else ""
    return sign + text[len(sign) :][::-1]


def restore_answer(text: str, cfg: ArithmeticConfig) -> str:
    """What a person should see of a model answer in ``cfg.answer_format``: the
    normal value for ``reversed`` and ``spaced``, the text unchanged otherwise."""
    if cfg.answer_format == "reversed":
        return reverse_digits(text)
    if cfg.answer_format == "spaced":
        return re.sub(r"(?<=[\d.-]) (?=[\d.])", "", text.strip())
    return text


_VALUE = re.compile(r"-?\d+(?:\.\d+)?(?: R \d+)?")


def learned_answer(text: str, cfg: ArithmeticConfig) -> str:
    """The inverse of :func:`restore_answer`: a value as a person saw it (``181``) in the
    form the model learned to write it (``181`` reversed is ``181``, ``-64`` is ``-46``;
    spaced ``1 8 1``); any other text unchanged."""
    value = text.strip()
    if cfg.answer_format not in ("reversed", "spaced") or not _VALUE.fullmatch(value):
        return text
    if cfg.answer_format == "reversed":
        return reverse_digits(value)  # its own inverse, `3 R 2` <-> `2 R 3` too
    return " ".join(value.replace(" R ", "R"))


def reference_answer(problem: Problem, cfg: ArithmeticConfig) -> str:
    """The checked answer: the canonical value, or ``Q R r`` for an integer division
    with ``division: remainder``."""
    if problem.op == "/" and cfg.division == "remainder" and _is_integer(problem):
        q, r = divmod(int(problem.a), int(problem.b))
        return f"{q} R {r}"
    return canonical(solve(problem, cfg.division_places))


def _is_integer(problem: Problem) -> bool:
    return problem.a == problem.a.to_integral_value() and problem.b == problem.b.to_integral_value()


def worked_product(problem: Problem) -> str | None:
    """Goat-style steps for an integer ``a*b``: one partial product per nonzero digit of
    ``b``, then their sum (``47*86`` -> ``47*80+47*6=3760+282=4042``); None when there
    is only one partial product (the value is the whole answer) or the operands are not
    integers."""
    if problem.op != "*" or not _is_integer(problem):
        return None
    a, b = int(problem.a), int(problem.b)
    digits = str(b)
    parts = [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]
    if len(parts) < 2:
        return None
    terms = "+".join(f"{a}*{p}" for p in parts)
    products = "+".join(str(a * p) for p in parts)
    return f"{terms}={products}={a * b}"


def _worked(problem: Problem, value: str, cfg: ArithmeticConfig) -> str:
    """The ``columns`` answer: + and - by columns, integer * by partial products, integer
    / with a remainder by long division; the value alone where no steps apply (a decimal
    product or quotient)."""
    if problem.op in "+-":
        return column_steps(problem.a, problem.op, problem.b, cfg.borrow, cfg.sign, cfg.carry_in, cfg.digits_so_far,
                            cfg.restate, problem.widths)
    if not _is_integer(problem):
        return value
    if problem.op == "*":
        return product_steps(int(problem.a), int(problem.b), cfg.carry_in, cfg.product_steps)
    if " R " in value:
        return division_steps(int(problem.a), int(problem.b), cfg.division_steps)
    return value


def prompt_style(rng: random.Random, cfg: ArithmeticConfig) -> str:
    """The prompt style of one training problem: drawn by ``train_prompt_formats``'s
    weights, or ``prompt_format`` (then nothing is drawn from ``rng``)."""
    styles = cfg.train_prompt_formats
    if not styles:
        return cfg.prompt_format
    names = list(styles)
    return rng.choices(names, weights=[styles[n] for n in names])[0]


def to_example(problem: Problem, rng: random.Random, cfg: ArithmeticConfig, style: str | None = None) -> Example:
    """Render a problem in the configured prompt and answer formats; ``style`` asks it in
    another prompt style than ``cfg.prompt_format`` (``bare`` or ``zh_pairs``)."""
    value = reference_answer(problem, cfg)
    if (style or cfg.prompt_format) == "zh_pairs":
        ask, reply = rng.choice(ZH_PAIRS)
        prompt = f"{ask}: {problem.text} {reply}:"
    else:
        prompt = problem.text
    if cfg.answer_format == "equation":
        response = problem.text + value
    elif cfg.answer_format == "reversed":
        response = reverse_digits(value)
    elif cfg.answer_format == "spaced":
        response = " ".join(value.replace(" R ", "R"))
    elif cfg.answer_format == "steps":
        response = worked_product(problem) or value
    elif cfg.answer_format == "columns":
        response = _worked(problem, value, cfg)
    else:
        response = value
    return Example(prompt=prompt, response=response, answer=value, category=category(problem))


def _distinct(
    rng: random.Random, cfg: ArithmeticConfig, n: int, exclude: set[tuple], setting: str, close_share: float = 0.0
) -> list[Problem]:
    """``n`` distinct problems not in ``exclude``; ``setting`` names the size in errors."""
    chosen: dict[tuple, Problem] = {}
    tries = 0
    while len(chosen) < n:
        p = sample_problem(rng, cfg, close_share)
        if p.key not in exclude:
            chosen.setdefault(p.key, p)
        tries += 1
        if tries > 50 * n + 1000:
            where = " outside the eval set" if exclude else ""
            raise ValueError(
                f"{setting}={n}: only {len(chosen)} distinct problems remain{where} in the arithmetic "
                f"range; lower {setting} or widen data.arithmetic.digits"
            )
    return list(chosen.values())


def eval_problems(cfg: ArithmeticConfig, n: int, seed: int) -> list[Problem]:
    """``n`` distinct held-out problems drawn from ``seed``.

    Raises:
        ValueError: the configured range holds fewer than about ``n`` distinct problems.
    """
    return _distinct(random.Random(f"eval-{seed}"), cfg, n, set(), "eval.max_examples")


def training_mix(cfg: ArithmeticConfig) -> ArithmeticConfig:
    """The settings training problems are drawn with: ``train_ops`` and
    ``train_digit_sampling`` where set, else the evaluation's ``ops`` and ``digit_sampling``."""
    return replace(cfg, ops=cfg.train_ops or cfg.ops, digit_sampling=cfg.train_digit_sampling or cfg.digit_sampling)


def train_problems(
    cfg: ArithmeticConfig, seed: int, exclude: set[tuple], limit: int | None = None
) -> Iterator[Problem]:
    """Endless stream of training problems (or ``limit`` distinct ones), none in ``exclude``.

    Raises:
        ValueError: fewer than about ``limit`` problems remain outside ``exclude``.
    """
    rng = random.Random(f"train-{seed}")
    if limit is not None:
        yield from _distinct(rng, cfg, limit, exclude, "data.train_size", cfg.train_close_share)
        return
    while True:
        p = sample_problem(rng, cfg, cfg.train_close_share)
        # Drawn only when asked for, so that a run without it draws the same problems as before.
        if cfg.train_point_share and p.op in "+-" and _is_integer(p) and rng.random() < cfg.train_point_share:
            p = _pointed(rng, p)
        elif cfg.train_pad_share and p.op in "+-" and _is_integer(p) and rng.random() < cfg.train_pad_share:
            p = _padded(rng, p, longest_operand(cfg))
        if p.key not in exclude:
            yield p
