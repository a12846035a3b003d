"""The step verifier: every written step of a worked answer checked by value.

A *step* is an equation chain written in the text, such as ``3-9=-6+10=4`` (two links:
3-9 = -6 and -6+10 = 4) or GSM8K's calculator note ``<<48/2=24>>``. Steps are the runs
of the characters ``0-9 . + - * / ( ) =`` and spaces that hold at least one ``=``;
anything else (``,``, ``:``, ``<``, words, ``####``) separates them, and the final answer
after ``####`` is not a step. A step is right when every side of its chain has the value
of the side before it, or runs on from it (``3-9=-6+10=4``: -6 is 3-9, then -6+10 is 4),
by exact values (:class:`fractions.Fraction`, no floats); one that does not parse is wrong.

Against a reference worked answer written in the same format, the *first wrong step* is
the first one that is false or differs from the reference step at the same position,
with its kind:

* ``sign``: what is written between steps differs from the reference, where a negative
  result is decided (``-(281-278):`` before the first column, or ``<0,-(...)`` after the
  top one), or only the final answer's sign is wrong;
* ``copy``: an operand of the step is not the reference's (a digit taken from the wrong
  place or misread), or a number restated between steps is not (``;282+3760:``);
* ``carry`` / ``borrow``: the step adds or lacks the carry (+) or borrow (-) the
  reference has (``9+9=18`` where ``9+9+1=19`` was due, ``2-3=-1`` where ``2-1-3=-2``,
  ``3-9=-6`` not followed by ``+10=4``);
* ``fact``: the operands are right but the result is not (``7+8=16``);
* ``missing`` / ``extra``: fewer or more steps than the reference;
* ``answer``: every step right, the final value wrong (the digits were put together wrongly).

For column answers (``answer_format: columns``) step n is column n, units first.

Example:
    >>> [s.ok for s in check_steps("6+9=15,9+9+1=18,1+5+1=7 #### 785")]
    [True, False, True]
    >>> first_wrong_step("6+9=15,9+9=18,1+5+1=7 #### 785", "6+9=15,9+9+1=19,1+5+1=7 #### 795")
    StepError(index=1, kind='carry', step='9+9=18', expected='9+9+1=19')
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Step", "StepError", "check_steps", "first_wrong_step", "wrong_step_span", "step_figures", "summarize_steps", "STEP_KINDS"]

STEP_KINDS = ("sign", "copy", "carry", "borrow", "fact", "missing", "extra", "answer")
"""Kinds of first wrong step, in the order a report lists them."""

_RUN = re.compile(r"[0-9.+\-*/() =]+")
_TERM = re.compile(r"[+-]?\s*\(?\s*\d+(?:\.\d+)?\s*\)?")


@dataclass(frozen=True)
class Step:
    """One equation chain of a text: its characters, where it starts, and whether every
    side has the same value."""

    text: str
    start: int
    ok: bool


@dataclass(frozen=True)
class StepError:
    """The first wrong step of a worked answer (0-based ``index`` among its steps), its
    kind (:data:`STEP_KINDS`), what was written and what the reference has there."""

    index: int
    kind: str
    step: str
    expected: str


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return left / right  # ZeroDivisionError: caught by the caller
    raise ValueError("not arithmetic")


def _evaluate(expression: str) -> Fraction | None:
    """Exact value of an arithmetic expression of numbers, + - * / and parentheses;
    None when it is not one (empty, cut off, leading zeros such as ``07``)."""
    text = expression.strip()
    if not text or re.search(r"\d\s+\d|\*\*|//", text):
        return None
    # Leading zeros are not Python literals (07); the value is what is written.
    text = re.sub(r"(?<![\d.])0+(?=\d)", "", text)
    try:
        return _value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


_LEAD = re.compile(r"^\s*(-?\s*\d+(?:\.\d+)?)\s*[-+*/]")


def _chain_ok(text: str) -> bool:
    """Every link of the chain holds: a side equals the one before it, or runs on from
    its value (``3-9=-6+10=4``: -6 is 3-9, then -6+10 is 4)."""
    sides = text.split("=")
    current = _evaluate(sides[0])
    for side in sides[1:]:
        value = _evaluate(side)
        if current is None or value is None:
            return False
        if value != current:
            lead = _LEAD.match(side)
            if not lead or Fraction(lead.group(1).replace(" ", "")) != current:
                return False
        current = value
    return True


def check_steps(text: str) -> list[Step]:
    """Every step written before the final answer (``####``), each checked by value.

    Args:
        text: A worked answer, e.g. ``"3-9=-6+10=4,4-1-2=1,8-1=7 #### 714"``.

    Returns:
        The steps in order; [] when the text writes none.
    """
    # A full stop (a point not followed by a digit) ends a sentence, not a number.
    body = re.sub(r"\.(?!\d)", ";", text.split("####", 1)[0])
    steps = []
    for m in _RUN.finditer(body):
        run = m.group()
        step = run.strip(" .")  # a sentence's full stop is not a decimal point
        if "=" not in step or any(not side.strip() for side in step.split("=")):
            continue  # an equation has two sides (GSM8K's `48/2 = <<48/2=24>>` writes one twice)
        steps.append(Step(step, m.start() + run.index(step), _chain_ok(step)))
    return steps


def _terms(side: str) -> list[Fraction] | None:
    """The signed terms of a chain's first side (``4-1-2`` -> [4, -1, -2])."""
    side = side.replace(" ", "")
    found = _TERM.findall(side)
    if "".join(found).replace(" ", "") != side:
        return None
    return [Fraction(t.replace("(", "").replace(")", "").replace(" ", "")) for t in found]


def _step_kind(got: str, want: str, got_ok: bool) -> str:
    """Why step ``got`` is wrong where the reference wrote ``want``."""
    op = "borrow" if "-" in want.split("=", 1)[0].lstrip("-") else "carry"
    g_sides, w_sides = got.split("="), want.split("=")
    g_terms, w_terms = _terms(g_sides[0]), _terms(w_sides[0])
    if g_terms is None or w_terms is None:
        return "fact" if g_terms == w_terms else "copy"
    if g_terms == w_terms:
        # Same operands: a false result, or a chain that stops or goes on where the
        # reference's does not (3-9=-6 without +10=4: the borrow not taken).
        return "fact" if not got_ok or len(g_sides) == len(w_sides) else op
    if len(g_terms) != len(w_terms):
        return op
    # The borrowed ten written on the top digit (13-9 against 3-9).
    if len(g_terms) >= 1 and abs(g_terms[0] - w_terms[0]) == 10 and g_terms[1:] == w_terms[1:]:
        return "borrow"
    return "copy"



def first_wrong_step(prediction: str, reference: str, correct: bool | None = None) -> StepError | None:
    """The first step of ``prediction`` that is false or differs from ``reference``'s
    step at the same position (module docstring), or None when it has none.

    Args:
        prediction: The model's worked answer.
        reference: The reference worked answer, in the same format.
        correct: Whether the final answer was judged right; when False and every step
            matches, the error is the ``answer`` itself. None: not considered.
    """
    return _first_wrong(prediction, check_steps(prediction), reference, check_steps(reference), correct)


def _first_wrong(prediction: str, got: list[Step], reference: str, want: list[Step], correct: bool | None) -> StepError | None:
    """:func:`first_wrong_step` on steps already checked."""
    for i, w in enumerate(want):
        if i >= len(got):
            return StepError(i, "missing", "", w.text)
        g = got[i]
        # What comes between steps: where a sign is decided (`-(281-278):` before the first
        # column, `<0,-(...)` after the last), or a restated number (`;282+3760:`, the
        # partial products of a worked product): a different one there is a sign error,
        # or a copy error.
        got_gap, want_gap = _gap(prediction, got, i), _gap(reference, want, i)
        if got_gap != want_gap:
            sign = any(mark in got_gap + want_gap for mark in ("-(", "<"))
            return StepError(i, "sign" if sign else "copy", g.text, w.text)
        if not g.ok or not _same(g.text, w.text):
            # The reference decides the sign right after this step (`2-1-2=-1<0,...`, or
            # `7-8=-1:-(281-278):` after the leading columns' comparison): a sign error.
            after = _gap(reference, want, i + 1) if i + 1 < len(want) else ""
            turns = "<" in after or after.startswith(":")
            return StepError(i, "sign" if turns else _step_kind(g.text, w.text, g.ok), g.text, w.text)
    if len(got) > len(want):
        return StepError(len(want), "extra", got[len(want)].text, "")
    if correct is False:
        got_value, want_value = prediction.rsplit("####", 1)[-1].strip(), reference.rsplit("####", 1)[-1].strip()
        kind = "sign" if got_value.startswith("-") != want_value.startswith("-") else "answer"
        return StepError(len(want), kind, got_value, want_value)
    return None


def wrong_step_span(prediction: str, reference: str, correct: bool | None = None) -> tuple[int, int] | None:
    """Where in ``prediction`` its first wrong step (:func:`first_wrong_step`) is written:
    characters ``[start, end)`` from the end of the step before it (what is written between
    steps is part of the step) to the end of the wrong one; a missing step or a wrong final
    answer spans from the last step to the end. None when no step is wrong.

    Example:
        >>> text = "6+9=15,9+9=18,1+5+1=7 #### 785"
        >>> start, end = wrong_step_span(text, "6+9=15,9+9+1=19,1+5+1=7 #### 795")
        >>> text[start:end]
        ',9+9=18'
    """
    got = check_steps(prediction)
    error = _first_wrong(prediction, got, reference, check_steps(reference), correct)
    if error is None:
        return None
    before = got[error.index - 1] if 0 < error.index <= len(got) else None
    start = before.start + len(before.text) if before is not None else 0
    if error.index < len(got) and error.kind not in ("missing", "answer"):
        return start, got[error.index].start + len(got[error.index].text)
    if got:
        start = got[-1].start + len(got[-1].text)
    return start, len(prediction)


def _gap(text: str, steps: list[Step], i: int) -> str:
    """The text between step ``i - 1`` and step ``i``, without separators and spaces."""
    start = steps[i - 1].start + len(steps[i - 1].text) if i else 0
    return re.sub(r"[\s,;]", "", text[start : steps[i].start])


def _same(a: str, b: str) -> bool:
    return a.replace(" ", "") == b.replace(" ", "")


def step_figures(prediction: str, reference: str, correct: bool) -> dict | None:
    """One example's step figures: ``steps`` written, ``steps_right``, and ``first_wrong``
    (``{"step": n (1-based), "kind", "wrote", "expected"}``, or None).

    A step is right when it is true by value and is the step the reference writes at
    that position (``9+9=18`` is true, but wrong where the carry made it ``9+9+1=19``).

    Returns:
        None when ``reference`` writes no steps (a plain value: nothing to check).
    """
    want = check_steps(reference)
    if not want:
        return None
    written = check_steps(prediction)
    right = sum(s.ok and i < len(want) and _same(s.text, want[i].text) for i, s in enumerate(written))
    error = _first_wrong(prediction, written, reference, want, correct)
    first = None if error is None else {"step": error.index + 1, "kind": error.kind, "wrote": error.step,
                                        "expected": error.expected}
    return {"steps": len(written), "steps_right": right, "first_wrong": first}


def summarize_steps(figures: list[dict | None]) -> dict | None:
    """Step accuracy (right steps of all steps written) and where the first wrong step
    falls, ``{kind: {step: count}}``, over the examples :func:`step_figures` checked;
    None when none was."""
    checked = [f for f in figures if f is not None]
    if not checked:
        return None
    written = sum(f["steps"] for f in checked)
    table: dict[str, dict[str, int]] = {}
    for f in checked:
        if f["first_wrong"]:
            row = table.setdefault(f["first_wrong"]["kind"], {})
            step = str(f["first_wrong"]["step"])
            row[step] = row.get(step, 0) + 1
    order = {k: i for i, k in enumerate(STEP_KINDS)}
    return {
        "step_accuracy": sum(f["steps_right"] for f in checked) / written if written else 0.0,
        "steps_written": written,
        "all_steps_right": sum(f["first_wrong"] is None for f in checked) / len(checked),
        "first_wrong": {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in
                        sorted(table.items(), key=lambda kv: order.get(kv[0], len(order)))},
    }
