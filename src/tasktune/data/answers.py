"""Final answers in text, and their values: pure functions of strings.

Where a text states its final answer, in this order of precedence:

1. GSM8K's ``#### N`` (the last one);
2. LaTeX ``\\boxed{...}`` (the last one);
3. otherwise the last number of the text (``98+83=181`` -> 181, ``so she pays $1,234.`` -> 1234).

A number is an integer or decimal with an optional sign, a fraction (``31/2432``,
Math23K's ``((31)/(2432))``, LaTeX ``\\frac{31}{2432}``), a mixed number (Math23K's
``7((1)/(3))``) or a percentage (``40%`` = 0.4). Full-width digits and signs are
normalised (NFKC), and thousands separators between digit groups are removed.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from fractions import Fraction

__all__ = ["extract_answer", "final_answer", "parse_value", "decimal_places", "stated_answer", "remainder_pair"]

_FRAC_TEX = re.compile(r"\\[dt]?frac\{\s*(-?\d+(?:\.\d+)?)\s*\}\{\s*(\d+(?:\.\d+)?)\s*\}")
# A number or fraction in parentheses: Math23K writes 1/3 as ((1)/(3)).
_PARENS = re.compile(r"\(\s*(-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)\s*\)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?%?")
_MIXED = re.compile(r"^(-?\d+)\(\((\d+)\)/\((\d+)\)\)$")
_REMAINDER = re.compile(r"(-?\d+)\s*R\s*(\d+)")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("−", "-").replace("\u2212", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 1,234,567 -> 1234567
    text = _FRAC_TEX.sub(r"\1/\2", text)
    return text


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return text[i:]


def extract_answer(text: str) -> str | None:
    """The final answer of ``text`` as a normalised number string (``"1234"``,
    ``"31/2432"``, ``"22/3"`` for ``7((1)/(3))``, ``"40%"``); None if the text states no number."""
    text = _normalise(text)
    mixed = _MIXED.match(text.strip())
    if mixed:  # Math23K's mixed number 7((1)/(3)) = 22/3
        whole, top, bottom = (int(g) for g in mixed.groups())
        value = (abs(whole) + Fraction(top, bottom)) * (-1 if whole < 0 else 1)
        return f"{value.numerator}/{value.denominator}"
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    else:
        boxed = _last_boxed(text)
        if boxed is not None:
            text = boxed
    text = _PARENS.sub(r"\1", _PARENS.sub(r"\1", text))  # ((31)/(2432)) -> 31/2432
    found = _NUMBER.findall(text)
    return re.sub(r"\s+", "", found[-1]) if found else None


def final_answer(text: str) -> str | None:
    """The answer a reply ends on, for people and files: what follows its last ``####``
    (``... #### 17 R 2`` -> ``17 R 2``), else :func:`extract_answer`'s number; None if none."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip() or None
    return extract_answer(text)


def parse_value(number: str) -> Fraction | None:
    """The exact value of a number string from :func:`extract_answer` (or a plain
    number); None if it is not one."""
    text = number.strip()
    body = text[:-1] if text.endswith("%") else text
    try:
        top, _, bottom = body.partition("/")
        value = Fraction(top) / Fraction(bottom) if bottom else Fraction(top)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if text.endswith("%") else value


def decimal_places(number: str) -> int | None:
    """Decimal places a number string states (``"8.40"`` -> 2, ``"40%"`` -> 2, ``"3"``
    -> 0); None for a fraction, whose value has no stated precision."""
    text = number.strip()
    if "/" in text:
        return None
    places = len(text.rstrip("%").partition(".")[2])
    return places + 2 if text.endswith("%") else places


def stated_answer(text: str) -> str | None:
    """The answer a reference text states outright, for checking by value: the whole
    text is one number (``8.40`` -> ``8.4``, ``((1)/(3))`` -> ``1/3``, ``7((1)/(3))`` -> ``22/3``, ``40%``), or it
    ends with GSM8K's ``#### N`` or has a ``\\boxed{...}``. None for free text, which
    is compared as text."""
    stripped = _normalise(text).strip()
    if not stripped:
        return None
    answer = extract_answer(stripped)
    if answer is None:
        return None
    whole = re.sub(r"[\s()]", "", stripped) == answer or _MIXED.match(stripped)
    if not (whole or "####" in stripped or "\\boxed{" in stripped):
        return None
    if parse_value(answer) is None:
        return None
    if whole and re.fullmatch(r"-?\d+(?:\.\d+)?", answer):
        return _canonical_decimal(answer)
    return answer


def _canonical_decimal(text: str) -> str:
    """``8.40`` -> ``8.4``, ``-0`` -> ``0``, ``1.0`` -> ``1``."""
    value = Decimal(text).normalize()
    return "0" if value == 0 else format(value, "f")


def remainder_pair(text: str, whole: bool = False) -> tuple[int, int] | None:
    """Quotient and remainder stated as ``Q R r`` (``17/5=3 R 2`` -> (3, 2)), the last
    one in ``text``; with ``whole``, only when the whole text is that answer. None if
    there is none."""
    text = _normalise(text).strip()
    if whole:
        found = _REMAINDER.fullmatch(text)
        return (int(found[1]), int(found[2])) if found else None
    pairs = _REMAINDER.findall(text)
    return (int(pairs[-1][0]), int(pairs[-1][1])) if pairs else None
