"""Exact match by value: the verifier of numeric tasks. Pure functions of strings.

The final answer of a response is found by :func:`tasktune.data.answers.extract_answer`
(GSM8K's ``#### N``, else ``\\boxed{...}``, else the last number: ``98+83=181`` -> 181).
It matches the reference when it lies within half a unit of the reference's last
decimal place (reference ``8.4``: anything in (8.35, 8.45); ``181``: (180.5, 181.5)).
A fraction reference (Math23K's ``((1)/(3))``) has no last place: a fraction answer
must equal it, a decimal answer with at least two places must round to it
(``0.33`` and ``0.333`` match 1/3, ``0.3`` does not). A quotient-and-remainder
reference (``3 R 2``) matches the last ``Q R r`` of the response when both are equal;
a response of the bare quotient matches a zero remainder (``3`` for ``3 R 0``).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from tasktune.data.answers import decimal_places, extract_answer, parse_value, remainder_pair

__all__ = ["extract_number", "matches_value", "is_correct"]


def extract_number(text: str) -> Decimal | None:
    """The final number of ``text`` as a Decimal (fractions rounded to 12 places);
    None if it has none."""
    found = extract_answer(text)
    value = parse_value(found) if found else None
    if value is None:
        return None
    if value.denominator == 1 or "/" not in found:
        return Decimal(found.rstrip("%")) / (100 if found.endswith("%") else 1)
    return round(Decimal(value.numerator) / Decimal(value.denominator), 12)


def _half_unit(places: int) -> Fraction:
    return Fraction(5, 10 ** (places + 1))


def matches_value(prediction: str, reference: str) -> bool:
    """True when the final answer of ``prediction`` equals that of ``reference`` by
    value (see the module docstring)."""
    pair = remainder_pair(reference, whole=True)
    if pair is not None:
        got_pair = remainder_pair(prediction)
        if got_pair is None:
            got_text = extract_answer(prediction)
            got = parse_value(got_text) if got_text else None
            got_pair = (int(got), 0) if got is not None and got.denominator == 1 else None
        return got_pair == pair
    ref_text, got_text = extract_answer(reference), extract_answer(prediction)
    if ref_text is None or got_text is None:
        return False
    ref, got = parse_value(ref_text), parse_value(got_text)
    if ref is None or got is None:
        return False
    places = decimal_places(ref_text)
    if places is not None:
        return abs(got - ref) < _half_unit(places)
    got_places = decimal_places(got_text)
    if got_places is None:
        return got == ref
    return got_places >= 2 and abs(got - ref) < _half_unit(got_places)


def is_correct(prediction: str, reference: str, numeric: bool) -> bool:
    """Numeric tasks compare by value; others by the whitespace-stripped text."""
    if numeric:
        return matches_value(prediction, reference)
    return prediction.strip() == reference.strip()
