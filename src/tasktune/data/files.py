"""Alpaca-shaped data files: a JSON array or JSON lines of instruction/input/output rows.

Rows may carry ``system`` and ``history`` ([[user, assistant], ...]). Other shapes map
their columns onto these names (GSM8K: ``{instruction: question, output: answer}``).
Every bad row is reported as ``FILE:ROW: what is wrong``; rows are numbered from 1
(the line number for JSON lines, the element number for a JSON array). A UTF-8 BOM
and CRLF line ends are valid input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasktune.data.answers import stated_answer
from tasktune.data.example import Example

__all__ = ["FIELDS", "DataFileError", "LoadResult", "read_rows", "row_to_example", "load_file"]

FIELDS = ("instruction", "input", "output", "system", "history")
FileFormat = Literal["auto", "json", "jsonl"]
AnswerMode = Literal["auto", "text"]


class DataFileError(ValueError):
    """A data file that cannot be used; ``problems`` holds one ``FILE:ROW: ...`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f"\n(and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__("\n".join(problems[:20]) + more)


@dataclass
class LoadResult:
    """Examples read from a file, and the bad rows (skipped or fatal)."""

    examples: list[Example] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    total_rows: int = 0


def read_rows(path: str | Path, fmt: FileFormat = "auto") -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """Parse a file into (row number, value) pairs plus (row number, syntax problem) pairs.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: the whole file is unreadable (bad UTF-8, a broken JSON array).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"]) from None
    if fmt == "auto":
        fmt = "json" if text.lstrip().startswith("[") else "jsonl"
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError([f"{p}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})"]) from None
        if not isinstance(data, list):
            raise DataFileError([f"{p}: expected a JSON array of rows (or one JSON object per line)"])
        return list(enumerate(data, start=1)), []
    rows: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    # Lines end at "\n" (or "\r\n") only: str.splitlines would also split inside a JSON
    # string at U+2028, U+0085 and others, which JSON writers leave unescaped.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append((lineno, f"invalid JSON ({exc.msg}, column {exc.colno})"))
    return rows, problems


def row_to_example(row: Any, columns: dict[str, str] | None = None, answer: AnswerMode = "auto") -> Example:
    """Validate one row and turn it into an :class:`Example`.

    Args:
        row: The parsed JSON value of the row.
        columns: Our field name -> the file's column name, for other shapes.
        answer: ``auto``: a stated numeric answer (:func:`stated_answer`) is checked by
            value; ``text``: the output is compared as text.

    Raises:
        ValueError: what is wrong with the row, naming the field and the fix.
    """
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object with instruction/input/output, got {type(row).__name__}")
    cols = {f: (columns or {}).get(f, f) for f in FIELDS}

    def text(name: str, required: bool) -> str | None:
        key = cols[name]
        if key not in row or row[key] is None:
            if required:
                raise ValueError(f'missing "{key}"' + (f" (mapped to {name})" if key != name else ""))
            return None
        value = row[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "output":
            value = str(value)  # Math23K-like answers stored as numbers
        if not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string, got {type(value).__name__}')
        return value

    instruction = text("instruction", True) or ""
    extra = text("input", False) or ""
    output = text("output", True)
    if not instruction.strip() and not extra.strip():
        raise ValueError(f'empty prompt: "{cols["instruction"]}" and "{cols["input"]}" are both blank')
    if output is None or not output.strip():
        raise ValueError(f'empty "{cols["output"]}": nothing to learn from this row')
    history_raw = row.get(cols["history"]) or []
    if not isinstance(history_raw, list) or not all(
        isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in history_raw
    ):
        raise ValueError(f'"{cols["history"]}" must be a list of [user, assistant] string pairs')
    prompt = f"{instruction}\n{extra}" if instruction.strip() and extra.strip() else instruction + extra
    return Example(
        prompt=prompt,
        response=output,
        system=text("system", False),
        history=tuple((u, a) for u, a in history_raw),
        answer=stated_answer(output) if answer == "auto" else None,
    )


def load_file(
    path: str | Path,
    columns: dict[str, str] | None = None,
    on_bad_row: Literal["error", "skip"] = "error",
    fmt: FileFormat = "auto",
    answer: AnswerMode = "auto",
) -> LoadResult:
    """Read and validate every row of a file.

    Args:
        path: JSON array or JSON lines file.
        columns: Column mapping (see :func:`row_to_example`).
        on_bad_row: ``error`` raises listing every bad row; ``skip`` keeps the good ones
            and reports the skipped rows in ``bad_rows``.
        fmt: ``auto`` detects an array by its leading ``[``.
        answer: How references are checked (see :func:`row_to_example`).

    Raises:
        FileNotFoundError: no such file.
        DataFileError: bad rows with ``on_bad_row="error"``, or no usable row at all.
    """
    rows, bad = read_rows(path, fmt)
    result = LoadResult(total_rows=len(rows) + len(bad))
    for number, row in rows:
        try:
            result.examples.append(row_to_example(row, columns, answer))
        except ValueError as exc:
            bad.append((number, str(exc)))
    result.bad_rows = [f"{path}:{number}: {msg}" for number, msg in sorted(bad)]
    if result.bad_rows and on_bad_row == "error":
        raise DataFileError(result.bad_rows)
    if not result.examples:
        raise DataFileError(result.bad_rows or [f"{path}: no rows"])
    return result
