"""Worked answers for + - * /: every step a small fact, the value last.

Columns run units first (the order a carry or borrow flows), each written as a true
equation over one-digit numbers, then ``#### VALUE``:

* ``967+921=`` -> ``7+1=8,6+2=8,9+9=18 #### 1888``
* ``196+599=`` -> ``6+9=15,9+9=18+1=19,1+5=6+1=7 #### 795`` (``+1``: the carry in, a fact
  of its own after the column's sum; ``carry_in: fused`` writes ``9+9+1=19``)

Subtraction notations (``borrow``), for ``843-129=``:

* ``inline``: ``13-9=4,4-2=2-1=1,8-1=7 #### 714`` (a borrowed ten written on the top digit);
* ``signed``: ``3-9=-6+10=4,4-2=2-1=1,8-1=7 #### 714``: each column's true signed
  difference first, a negative one then made a digit by adding the ten it borrows;
  the next column pays it back (``-1``). No step has to decide anything before its
  operands are written.

A negative result (``278-281=``) is the swapped problem, sign first: ``sign: first``
writes ``-(281-278):`` then its steps; ``sign: compare`` first writes the leading columns'
signed differences, most significant first, until one is not 0, so the sign follows from a
written fact (``2-2=0,7-8=-1:-(281-278):...``; ``843-129=`` starts ``8-1=7:``); ``sign: last``
runs ``278-281``'s columns until the top one comes out negative, then ``<0,-(281-278):``
and the swapped steps.

Decimals are aligned on the point: the columns of ``12.34+5.6`` are those of
``1234+560`` and the value gets its point back with every place its columns have
(``#### 17.94``; ``48.48+68.62=`` ends ``#### 117.10``, read by value as 117.1: the last
digits of the columns, in order, with no trailing zero to drop).

Products (:func:`product_steps`) are partial products by the digits of the second
factor, then their column sums (or the product's own columns); integer division with a
remainder (:func:`division_steps`) is long division, each quotient digit found in one
step or, with ``style="subtract"``, by rounds of one-digit facts.

Why this long: the notation of all four operations is one thing to read and change
together (products and long division are written with the + and - column helpers).
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["canonical", "column_steps", "product_steps", "division_steps", "STEP_SEP", "ANSWER_MARK"]

STEP_SEP = ","
"""Between two steps."""
ANSWER_MARK = " #### "
"""Before the final value (GSM8K's marker: every verifier reads the value after it)."""


def _scaled(a: Decimal, b: Decimal) -> tuple[int, int, int]:
    """Both operands as integers in units of their finest decimal place, and the places."""
    places = max(-a.as_tuple().exponent, -b.as_tuple().exponent, 0)
    unit = Decimal(1).scaleb(-places)
    return int(a / unit), int(b / unit), places


def _digits(n: int, width: int) -> list[int]:
    """Digits of ``n >= 0`` units first, zero-padded to ``width``."""
    return [int(c) for c in reversed(str(n).zfill(width))]


def _add(a: int, b: int, chained: bool) -> list[str]:
    width = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        total = x + y + carry
        if not carry:
            steps.append(f"{x}+{y}={total}")
        else:
            steps.append(f"{x}+{y}={x + y}+1={total}" if chained else f"{x}+{y}+1={total}")
        carry = total // 10
    return steps


def _sub_columns(a: int, b: int, borrow: str, chained: bool = False) -> tuple[list[str], bool]:
    """Column steps of ``a - b`` and whether the top column came out negative (a < b)."""
    width = max(len(str(a)), len(str(b)))
    steps, owed = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        if owed and chained and borrow == "signed":
            left = f"{x}-{y}={x - y}-1"
        else:
            left = f"{x}-1-{y}" if owed else f"{x}-{y}"
        diff = x - owed - y
        if borrow == "inline":
            if diff < 0:
                left = f"1{x}-1-{y}" if owed else f"1{x}-{y}"
                steps.append(f"{left}={diff + 10}")
            else:
                steps.append(f"{left}={diff}")
        elif diff < 0:
            steps.append(f"{left}={diff}+10={diff + 10}")
        else:
            steps.append(f"{left}={diff}")
        owed = 1 if diff < 0 else 0
    return steps, bool(owed)


def _compare(a: int, b: int, width: int = 0) -> str:
    """The leading columns' signed differences, most significant first, up to the first
    that is not 0 (or all of them): its sign is the sign of ``a - b``. ``width``: from the
    leading zeros of operands written that wide."""
    width = max(len(str(a)), len(str(b)), width)
    steps = []
    for x, y in zip(reversed(_digits(a, width)), reversed(_digits(b, width))):
        steps.append(f"{x}-{y}={x - y}")
        if x != y:
            break
    return STEP_SEP.join(steps) + ":"


SO_FAR_MARK = "|"
"""Between a column's step and the value's digits so far (``digits_so_far``)."""


def _so_far(steps: list[str], places: int) -> list[str]:
    """Each column step followed by the value's digits up to it (``8+3=11`` ->
    ``8+3=11|1173``): the value is then copied from the line before it, not gathered
    backwards from every column. The top column keeps its carry; the point comes back
    once the digits pass it."""
    out, digits = [], ""
    for i, step in enumerate(steps):
        value = int(step.rsplit("=", 1)[1])
        digits = (str(value) if i == len(steps) - 1 else str(value % 10)) + digits
        shown = f"{digits[:-places]}.{digits[-places:]}" if places and len(digits) > places else digits
        out.append(f"{step}{SO_FAR_MARK}{shown}")
    return out


def _restated(steps: list[str], x: int, y: int, op: str, widths: tuple[int, int] = (0, 0)) -> list[str]:
    """Each column step preceded by what is left of both operands, the first by both whole
    (``restate``): ``3518+7937=`` -> ``3518+7937:8+7=15,351+793:1+3=4+1=5,35+79:5+9=14,
    3+7:3+7=10+1=11,0+0:0+0=0+1=1``. A column's digits are then the last digit of each
    restated operand, beside the ``+`` and the ``:``. + runs one column past both operands
    (restated ``0+0``, its carry in like any other column's) and ends there; - ends on a
    written ``0-0``: the columns end on what is written, not on a count. Decimals are
    restated aligned on the point (``12.3+4.56`` -> ``1230+456:...``). ``widths``: operands
    written zero-padded keep their zeros in every restatement (``0351+00793`` ->
    ``0351+00793:...,035+0079:...,03+007:...,0+00:...``): the columns are those of the
    values, only what is written again is longer."""

    cols = [f"{_left(x, y, op, widths, i)}:{step}" for i, step in enumerate(steps)]
    done = x // 10 ** (len(steps) - 1) == 0 and y // 10 ** (len(steps) - 1) == 0
    return cols if done else cols + [_left(x, y, op, widths, len(steps))]


def _left(x: int, y: int, op: str, widths: tuple[int, int], i: int) -> str:
    """What is left of both operands before column ``i``, written zeros kept (``035+0079``)."""
    return f"{str(x // 10**i).zfill(widths[0] - i)}{op}{str(y // 10**i).zfill(widths[1] - i)}"


def _sub(a: int, b: int, borrow: str, sign: str, restated: str, chained: bool, places: int | None = None,
         restate: bool = False, widths: tuple[int, int] = (0, 0)) -> str:
    """Steps of ``a - b``; ``restated`` is the swapped problem as written (``281-278``);
    ``places`` not None: the digits so far after each column (:func:`_so_far`);
    ``restate``: the operands left before each column (:func:`_restated`); ``widths``:
    the operands as written zero-padded (:func:`column_steps`)."""
    lead = _compare(a, b, max(widths)) if sign == "compare" else ""

    def columns(x: int, y: int, w: tuple[int, int]) -> str:
        steps = _sub_columns(x, y, borrow, chained)[0]
        steps = steps if places is None else _so_far(steps, places)
        return STEP_SEP.join(_restated(steps, x, y, "-", w) if restate else steps)

    if a >= b:
        return lead + columns(a, b, widths)
    swapped = columns(b, a, widths[::-1])
    if sign in ("first", "compare"):
        return f"{lead}-({restated}):{swapped}"
    tried, _ = _sub_columns(a, b, "signed", chained)
    # Only the top column shows the result is negative: its signed value, then the swap.
    top = tried[-1].split("+10=")[0]
    return STEP_SEP.join(tried[:-1] + [top]) + f"<0,-({restated}):{swapped}"


def canonical(value: Decimal) -> str:
    """Canonical text of a number: no trailing zeros after a point (``8.4``, never
    ``8.40``), never ``-0`` (the arithmetic task writes every number this way)."""
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def column_steps(
    a: Decimal, op: str, b: Decimal, borrow: str = "signed", sign: str = "compare", carry_in: str = "chained",
    digits_so_far: bool = False, restate: bool = False, widths: tuple[int, int] = (0, 0),
) -> str:
    """The worked answer to ``a op b`` (``op`` + or -), ending with ``#### VALUE``.

    Args:
        a, b: Non-negative operands (decimals keep their places: ``Decimal('5.6')``).
        op: ``+`` or ``-``.
        borrow: Subtraction notation, ``signed`` or ``inline`` (module docstring).
        sign: Where a negative result is decided: ``first``, ``compare`` or ``last``.
        carry_in: ``fused`` adds a carry or pays a borrow in the column's one fact
            (``9+9+1=19``, ``4-1-6=-3``); ``chained`` as a fact of its own after it
            (``9+9=18+1=19``, ``4-6=-2-1=-3``).
        digits_so_far: After each column, the value's digits up to it
            (``9+4=13|3,1+5=6+1=7|73,8+3=11|1173 #### 1173``).
        restate: Before each column, what is left of both operands (``84+12:4+2=6``);
            + runs one column more, restated ``0+0`` (:func:`_restated`).
        widths: Integer operands written zero-padded to these widths (``0351-00793=``, 0:
            none): the zeros are kept where the operands are written again (restated,
            swapped ``-(00793-0351)``) and ``sign: compare`` starts at the first written
            digit; the columns are the values' (a written zero is no column of its own).

    Raises:
        ValueError: another operation, or a negative operand.

    Example:
        >>> column_steps(Decimal(843), "-", Decimal(129))
        '8-1=7:3-9=-6+10=4,4-2=2-1=1,8-1=7 #### 714'
    """
    if a < 0 or b < 0:
        raise ValueError(f"column steps need non-negative operands, got {a} and {b}")
    x, y, places = _scaled(a, b)
    chained, so_far = carry_in == "chained", places if digits_so_far else None
    if op == "+":
        steps = _add(x, y, chained)
        if restate:
            # One column past both operands, restated 0+0, its carry in like any other's:
            # every column the same, and the columns end after the one restated 0+0 (or, with
            # written zeros, 0+00: no column for a written zero).
            top = x + y >= 10 ** max(len(str(x)), len(str(y)))
            steps.append(("0+0=0+1=1" if chained else "0+0+1=1") if top else "0+0=0")
        steps = steps if so_far is None else _so_far(steps, places)
        body, value = STEP_SEP.join(_restated(steps, x, y, "+", widths) if restate else steps), a + b
    elif op == "-":
        swapped = f"{canonical(b).zfill(widths[1])}-{canonical(a).zfill(widths[0])}"
        body, value = _sub(x, y, borrow, sign, swapped, chained, so_far, restate, widths), a - b
    else:
        raise ValueError(f"column steps are for + and -, not {op!r}")
    return f"{body}{ANSWER_MARK}{value:.{places}f}"


def _times_digit(x: int, y: int, carry: int, chained: bool) -> str:
    """The step ``x*y`` with ``carry`` added in: chained as a fact of its own
    (``4*6=24+4=28``) or fused (``4*6+4=28``)."""
    if not carry:
        return f"{x}*{y}={x * y}"
    return f"{x}*{y}={x * y}+{carry}={x * y + carry}" if chained else f"{x}*{y}+{carry}={x * y + carry}"


def _times(a: int, digit: int, chained: bool) -> tuple[list[str], int]:
    """Steps of ``a * digit`` by the digits of ``a``, units first, each carry added in."""
    steps, carry = [], 0
    for x in _digits(a, len(str(a))):
        steps.append(_times_digit(x, digit, carry, chained))
        carry = (x * digit + carry) // 10
    return steps, a * digit


def _product_columns(a: int, b: int, chained: bool) -> list[str]:
    """Steps of ``a * b`` by the columns of the product, units first: each column's
    one-digit products, their sum, then the carry in (``4*6=24,7*8=56,24+56=80+4=84``)."""
    xs, ys = _digits(a, len(str(a))), _digits(b, len(str(b)))
    steps, carry = [], 0
    for k in range(len(xs) + len(ys) - 1):
        pairs = [(xs[k - j], ys[j]) for j in range(len(ys)) if 0 <= k - j < len(xs)]
        products = [x * y for x, y in pairs]
        if len(pairs) == 1:
            steps.append(_times_digit(*pairs[0], carry, chained))
        else:
            steps += [f"{x}*{y}={p}" for (x, y), p in zip(pairs, products)]
            chain, total = str(products[0]), products[0]
            for p in products[1:] + ([carry] if carry else []):
                total += p
                chain += f"+{p}={total}"
            steps.append(chain)
        carry = (sum(products) + carry) // 10
    return steps


def _accumulated(steps: list[str], values: list[int], chained: bool) -> list[str]:
    """``steps``, each after the first followed by its value added to the values before
    it by columns (``:2+0=2,...``) and, when more values follow, the new sum marked."""
    out, total = [], 0
    for i, (step, value) in enumerate(zip(steps, values)):
        if i:
            step += ":" + STEP_SEP.join(_add(total, value, chained))
            if i < len(values) - 1:
                step += f"{SO_FAR_MARK}{total + value}"
        out.append(step)
        total += value
    return out


def _placed(a: int, digit: int, chained: bool) -> list[str]:
    """Steps of ``a * digit`` with no carry added into a product: each one-digit product
    written whole, then each added in its place by columns (``47*6``:
    ``7*6=42,4*6=24:2+0=2,4+4=8,0+2=2``)."""
    xs = _digits(a, len(str(a)))
    return _accumulated([f"{x}*{digit}={x * digit}" for x in xs], [x * digit * 10**place for place, x in enumerate(xs)],
                        chained)


def _marked_partials(a: int, b: int, chained: bool, placed: bool = False) -> str:
    """``product_steps(style="marked")``: each partial product's steps, then its value in
    place; the values added one at a time by columns. The factor with fewer digits goes
    on top, restated first when it is the second (``95*6=`` -> ``6*95:6*5=30|30,...``):
    the partials are then as many as the longer factor's digits, one per digit, each as
    long as the shorter factor. ``placed`` (``style="placed"``): each partial by
    :func:`_placed`, no carry added into a product."""
    head = ""
    if len(str(a)) > len(str(b)):
        a, b, head = b, a, f"{b}*{a}:"
    digits = _digits(b, len(str(b)))
    values = [a * digit * 10**place for place, digit in enumerate(digits)]
    partials = [STEP_SEP.join(_placed(a, digit, chained) if placed else _times(a, digit, chained)[0]) + f"{SO_FAR_MARK}{value}"
                for digit, value in zip(digits, values)]
    return f"{head}{STEP_SEP.join(_accumulated(partials, values, chained))}{ANSWER_MARK}{a * b}"


def product_steps(a: int, b: int, carry_in: str = "chained", style: str = "partials") -> str:
    """The worked product of non-negative integers, then ``#### VALUE``.

    Args:
        a, b: The factors.
        carry_in: ``chained`` adds a carry as a fact of its own (``4*6=24+4=28``),
            ``fused`` in the product's step (``4*6+4=28``).
        style: ``partials``: one partial product per nonzero digit of ``b`` (units first),
            each by the digits of ``a`` with its carries, then the partial products
            restated and added by columns. ``marked``: one partial product per digit of
            ``b``, a zero digit too, each followed by its value in place (``|3760``); the
            partial values are then added by columns, nothing restated (every product
            has the same shape). ``placed``: ``marked`` with no carry added into a
            product, each digit product added in its place by columns (:func:`_placed`).
            ``marked`` and ``placed`` put the factor with fewer digits on top.
            ``columns``: the product's columns, units
            first, each the sum of its one-digit products and the carry in; the value is
            put together from the columns as in an addition (shorter: no partial product
            is restated).

    Example:
        >>> product_steps(47, 86)
        '7*6=42,4*6=24+4=28,7*8=56,4*8=32+5=37;282+3760:2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042'
        >>> product_steps(47, 6, carry_in="fused")
        '7*6=42,4*6+4=28 #### 282'
        >>> product_steps(47, 86, style="marked")
        '7*6=42,4*6=24+4=28|282,7*8=56,4*8=32+5=37|3760:2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042'
        >>> product_steps(95, 6, style="placed")
        '6*95:6*5=30|30,6*9=54|540:0+0=0,3+4=7,0+5=5 #### 570'
        >>> product_steps(47, 86, style="columns")
        '7*6=42,4*6=24,7*8=56,24+56=80+4=84,4*8=32+8=40 #### 4042'
    """
    if a < 0 or b < 0:
        raise ValueError(f"product steps need non-negative integers, got {a} and {b}")
    if style not in ("partials", "marked", "placed", "columns"):
        raise ValueError(f"product style is 'partials', 'marked', 'placed' or 'columns', not {style!r}")
    chained = carry_in == "chained"
    if style == "columns":
        return f"{STEP_SEP.join(_product_columns(a, b, chained))}{ANSWER_MARK}{a * b}"
    if style in ("marked", "placed"):
        return _marked_partials(a, b, chained, placed=style == "placed")
    steps, partials = [], []
    for place, digit in enumerate(_digits(b, len(str(b)))):
        if digit or (place == 0 and b == 0):
            done, value = _times(a, digit, chained)
            steps += done
            partials.append(value * 10**place)
    body, total = STEP_SEP.join(steps), partials[0]
    for p in partials[1:]:  # the partials summed one at a time
        body += f";{total}+{p}:" + STEP_SEP.join(_add(total, p, chained))
        total += p
    return f"{body}{ANSWER_MARK}{a * b}"


def _subtracting(c: int, b: int) -> tuple[list[str], int]:
    """One quotient digit of ``c // b`` (``c < 10 * b``) found by taking ``b`` away while it
    fits: each round compares by the leading columns (:func:`_compare`), then subtracts by
    signed columns (a one-digit ``c``: the comparison is the subtraction) and writes how
    many rounds so far (``|2``); the round that does not fit ends on its comparison.
    Returns the rounds and the remainder."""
    rounds, q = [], 0
    while True:
        head = f"{c}-{b}:{_compare(c, b)}"
        if c < b:
            return rounds + [head.rstrip(":")], c
        q += 1
        # One-digit numbers: the comparison is the whole subtraction.
        columns = "" if c < 10 else STEP_SEP.join(_sub_columns(c, b, "signed", True)[0])
        rounds.append((head + columns if columns else head.rstrip(":")) + f"{SO_FAR_MARK}{q}")
        c -= b


def _counting_down(c: int, b: int) -> tuple[str, int]:
    """One quotient digit of ``c // b`` for a one-digit ``b``: ``b`` taken from ``c`` one
    round at a time, each round one fact with the rounds so far (``37-5=32|1``), until a
    round comes out negative (``2-5=-3``): whether ``b`` still fits is read from the sign
    of a written difference, never from comparing two 2-digit numbers. Returns the
    rounds and the remainder."""
    rounds, q = [], 0
    while c >= b:
        q += 1
        rounds.append(f"{c}-{b}={c - b}{SO_FAR_MARK}{q}")
        c -= b
    return STEP_SEP.join(rounds + [f"{c}-{b}={c - b}"]), c



def division_steps(a: int, b: int, style: str = "long") -> str:
    """Long division of non-negative integers with a remainder, from the first part of
    ``a`` that ``b`` goes into, bringing down one digit at a time; then ``#### Q R r``.

    Args:
        a, b: Dividend and divisor.
        style: How each quotient digit is found. ``long`` takes the digit's multiple away
            in one step (``37-5*7=37-35=2``): the digit, the product and the difference
            are three facts in one. ``subtract``: a divisor of two digits or more is taken
            away round by round while the leading columns say it fits, every round by
            signed columns, each step a one-digit fact (:func:`_subtracting`); a one-digit
            divisor is taken from each digit's stage (every digit of ``a`` one) one
            fact a round, counted, until a round comes out negative
            (:func:`_counting_down`).

    Example:
        >>> division_steps(87, 5)
        '8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2'
        >>> division_steps(87, 23)
        '87-23*3=87-69=18 #### 3 R 18'
        >>> division_steps(57, 23, style="subtract")
        '57-23:5-2=3:7-3=4,5-2=3|1;34-23:3-2=1:4-3=1,3-2=1|2;11-23:1-2=-1 #### 2 R 11'
        >>> division_steps(37, 5, style="subtract")
        '3-5=-2;37-5=32|1,32-5=27|2,27-5=22|3,22-5=17|4,17-5=12|5,12-5=7|6,7-5=2|7,2-5=-3 #### 7 R 2'

    Raises:
        ValueError: ``b`` is 0, an operand is negative, or another style.
    """
    if b <= 0 or a < 0:
        raise ValueError(f"division steps need a >= 0 and b > 0, got {a} and {b}")
    if style not in ("long", "subtract"):
        raise ValueError(f"division style is 'long' or 'subtract', not {style!r}")
    digits = str(a)
    # A one-digit divisor counted down (subtract) has a stage for every digit of ``a``: the
    # quotient's digits are the stages' counts in order, however many fit.
    if style == "subtract" and b < 10:
        start = 1
    else:  # the first part of ``a`` that ``b`` goes into (all of it when none is)
        start = next((i for i in range(1, len(digits) + 1) if int(digits[:i]) >= b), len(digits))
    current, steps = int(digits[:start]), []
    for i in range(start, len(digits) + 1):
        if style == "subtract" and b < 10:
            text, current = _counting_down(current, b)
            steps.append(text)
        elif style == "subtract":
            rounds, current = _subtracting(current, b)
            steps.append(";".join(rounds))
        else:
            q = current // b
            steps.append(f"{current}-{b}*{q}={current}-{b * q}={current - b * q}")
            current -= b * q
        if i < len(digits):
            current = current * 10 + int(digits[i])
    return f"{(';' if style == 'subtract' else STEP_SEP).join(steps)}{ANSWER_MARK}{a // b} R {a % b}"
