"""Exact match by value: the verifier of numeric tasks. Pure functions of strings.

The final number of a response is read after its last ``=`` when there is one
(``98+83=181`` -> 181), else it is the last number in the text. It matches the
reference when it lies within half a unit of the reference's last decimal place
(reference ``8.4``: anything in (8.35, 8.45); ``181``: (180.5, 181.5)).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

__all__ = ["extract_number", "matches_value", "is_correct"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def extract_number(text: str) -> Decimal | None:
    """The final number of ``text`` (see module docstring); None if it has none.

    Full-width digits and signs are normalised (NFKC) and thousands separators
    between digit groups are removed (``1,234`` -> 1234).
    """
    text = unicodedata.normalize("NFKC", text).replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    tail = text.rsplit("=", 1)[-1]
    found = _NUMBER.findall(tail) or _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1])
    except InvalidOperation:  # pragma: no cover - the regex only admits valid numbers
        return None


def matches_value(prediction: str, reference: str) -> bool:
    """True when the final number of ``prediction`` equals ``reference`` within half a unit
    of the reference's last decimal place."""
    ref = extract_number(reference)
    got = extract_number(prediction)
    if ref is None or got is None:
        return False
    places = max(0, -ref.as_tuple().exponent)  # type: ignore[operator]
    return abs(got - ref) < Decimal(5).scaleb(-places - 1)


def is_correct(prediction: str, reference: str, numeric: bool) -> bool:
    """Numeric tasks compare by value; others by the whitespace-stripped text."""
    if numeric:
        return matches_value(prediction, reference)
    return prediction.strip() == reference.strip()
