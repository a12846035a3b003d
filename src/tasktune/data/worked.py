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
factor, then their column sums; integer division with a remainder
(:func:`division_steps`) is long division.
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


def _compare(a: int, b: int) -> str:
    """The leading columns' signed differences, most significant first, up to the first
    that is not 0 (or all of them): its sign is the sign of ``a - b``."""
    width = max(len(str(a)), len(str(b)))
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


def _sub(a: int, b: int, borrow: str, sign: str, restated: str, chained: bool, places: int | None = None) -> str:
    """Steps of ``a - b``; ``restated`` is the swapped problem as written (``281-278``);
    ``places`` not None: the digits so far after each column (:func:`_so_far`)."""
    lead = _compare(a, b) if sign == "compare" else ""

    def columns(x: int, y: int) -> str:
        steps = _sub_columns(x, y, borrow, chained)[0]
        return STEP_SEP.join(steps if places is None else _so_far(steps, places))

    if a >= b:
        return lead + columns(a, b)
    swapped = columns(b, a)
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
    digits_so_far: bool = False,
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
        body, value = STEP_SEP.join(steps if so_far is None else _so_far(steps, places)), a + b
    elif op == "-":
        body, value = _sub(x, y, borrow, sign, f"{canonical(b)}-{canonical(a)}", chained, so_far), a - b
    else:
        raise ValueError(f"column steps are for + and -, not {op!r}")
    return f"{body}{ANSWER_MARK}{value:.{places}f}"


def _times(a: int, digit: int, chained: bool) -> tuple[list[str], int]:
    """Steps of ``a * digit`` by the digits of ``a``, units first, each carry added in."""
    steps, carry = [], 0
    for x in _digits(a, len(str(a))):
        product = x * digit
        total = product + carry
        if not carry:
            steps.append(f"{x}*{digit}={total}")
        else:
            steps.append(f"{x}*{digit}={product}+{carry}={total}" if chained else f"{x}*{digit}+{carry}={total}")
        carry = total // 10
    return steps, a * digit


def product_steps(a: int, b: int, carry_in: str = "chained") -> str:
    """The worked product of non-negative integers: one partial product per nonzero digit
    of ``b`` (units first), each by the digits of ``a`` with its carries, then the
    partial products restated and added by columns, then ``#### VALUE``.

    Example:
        >>> product_steps(47, 86)
        '7*6=42,4*6=24+4=28,7*8=56,4*8=32+5=37;282+3760:2+0=2,8+6=14,2+7=9+1=10,0+3=3+1=4 #### 4042'
        >>> product_steps(47, 6, carry_in="fused")
        '7*6=42,4*6+4=28 #### 282'
    """
    if a < 0 or b < 0:
        raise ValueError(f"product steps need non-negative integers, got {a} and {b}")
    chained = carry_in == "chained"
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


def division_steps(a: int, b: int) -> str:
    """Long division of non-negative integers with a remainder: from the first part of
    ``a`` that ``b`` goes into, each step takes the quotient digit's multiple away
    (``37-5*7=37-35=2``) and brings down the next digit; then ``#### Q R r``.

    Example:
        >>> division_steps(87, 5)
        '8-5*1=8-5=3,37-5*7=37-35=2 #### 17 R 2'
        >>> division_steps(87, 23)
        '87-23*3=87-69=18 #### 3 R 18'

    Raises:
        ValueError: ``b`` is 0, or an operand is negative.
    """
    if b <= 0 or a < 0:
        raise ValueError(f"division steps need a >= 0 and b > 0, got {a} and {b}")
    digits = str(a)
    start = next((i for i in range(1, len(digits) + 1) if int(digits[:i]) >= b), len(digits))
    current, steps = int(digits[:start]), []
    for i in range(start, len(digits) + 1):
        q = current // b
        steps.append(f"{current}-{b}*{q}={current}-{b * q}={current - b * q}")
        current -= b * q
        if i < len(digits):
            current = current * 10 + int(digits[i])
    return f"{STEP_SEP.join(steps)}{ANSWER_MARK}{a // b} R {a % b}"
