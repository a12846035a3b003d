"""The surface stays small (STYLE rule 12): ~400 lines per module, ~60 per function and
at most 8 parameters in the recipes and the training loop. Anything longer says why in
its docstring, with the words "Why this long:"."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tasktune"
MODULE_LINES = 400
FUNCTION_LINES = 60
PARAMETERS = 8
EXCUSE = "Why this long:"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's end, its docstring left out (the words that
    explain a function do not make it harder to read)."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


def too_long(source: str, module: str, check_functions: bool) -> list[str]:
    """What in ``source`` is longer than the rule allows and does not say why."""
    tree = ast.parse(source)
    found = []
    lines = len(source.splitlines())
    if lines > MODULE_LINES and EXCUSE not in (ast.get_docstring(tree) or ""):
        found.append(f"{module}: {lines} lines")
    if check_functions:
        for node in _functions(tree):
            excused = EXCUSE in (ast.get_docstring(node) or "")
            if code_lines(node) > FUNCTION_LINES and not excused:
                found.append(f"{module}:{node.lineno} {node.name}: {code_lines(node)} lines")
            if parameters(node) > PARAMETERS and not excused:
                found.append(f"{module}:{node.lineno} {node.name}: {parameters(node)} parameters")
    return found


def test_modules_functions_and_parameters_stay_small():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        found += too_long(path.read_text(encoding="utf-8"), str(rel), rel.parts[0] in ("recipes", "train"))
    assert not found, "over STYLE rule 12's sizes (say why in the docstring, or split):\n" + "\n".join(found)


def test_the_rule_sees_a_long_function_and_takes_a_reason():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES + 1))
    source = f'def f(a, b, c, d, e, f, g, h, i):\n    """Does it."""\n{body}\n'
    assert [p.split(": ")[1] for p in too_long(source, "m.py", True)] == [f"{FUNCTION_LINES + 2} lines", "9 parameters"]
    excused = source.replace('"""Does it."""', f'"""Does it. {EXCUSE} one table, read in one place."""')
    assert too_long(excused, "m.py", True) == []
    assert too_long(source, "m.py", False) == []  # functions are checked in recipes/ and train/ only
