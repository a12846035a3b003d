"""The tree mirrors the pipeline: a stage imports only earlier stages (STYLE rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tasktune"
STAGES = ["data", "encoding", "model", "adapters", "train", "checkpoint", "generate", "eval", "report", "recipes", "cli"]
SHARED = {"config", "constants"}  # importable from anywhere
SERVE_MAY_USE = set(STAGES[: STAGES.index("generate") + 1])


def _stage(module: str) -> str | None:
    """``tasktune.train.loop`` -> ``train``; None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tasktune" else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``source``, anywhere in the file.

    ``from tasktune import train`` counts as importing ``tasktune.train``; relative
    imports are resolved against ``module``.
    """
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            if target == "tasktune":  # from tasktune import train: the names are stages
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``module`` that reach a later stage (or anything serve may not use)."""
    own = _stage(module)
    bad = []
    for line, target in imported_modules(source, module, is_package):
        other = _stage(target)
        if other is None or other == own or other in SHARED or other not in STAGES:
            continue
        if own == "serve":
            allowed = other in SERVE_MAY_USE
        elif own in SHARED:
            allowed = False  # config and constants import no stage
        elif own in STAGES:
            allowed = STAGES.index(other) < STAGES.index(own)
        else:
            allowed = True  # the package root
        if not allowed:
            bad.append(f"{module}:{line} imports {target} (stage {other!r} comes after {own!r})")
    return bad


def test_every_package_is_a_known_stage():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(STAGES) | SHARED | {"serve"}, packages - set(STAGES)
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}  # __main__: `python -m tasktune`
    assert modules <= SHARED, modules - SHARED


def test_no_stage_imports_a_later_one():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        problems += violations(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, source, n_bad",
    [
        ("tasktune.data.files", "from tasktune.train import lr_at", 1),
        ("tasktune.data.files", "import tasktune.encoding.chat", 1),
        ("tasktune.data.files", "import tasktune.encoding.chat as c", 1),
        ("tasktune.data.files", "from tasktune import eval", 1),
        ("tasktune.data.files", "def f():\n    from tasktune.model import load_model", 1),  # lazy import
        ("tasktune.encoding.chat", "from ..train import loop", 1),  # relative
        ("tasktune.encoding", "from .chat import ChatEncoder\nfrom ..model import load", 1),
        ("tasktune.config", "from tasktune.data import Example", 1),
        ("tasktune.serve.app", "from tasktune.generate import generate_batch\nfrom tasktune.recipes import chat", 1),
        ("tasktune.train.loop", "from tasktune.encoding import pad_right\nfrom tasktune.config import TrainConfig", 0),
        ("tasktune.train.loop", "from tasktune.train.loss import x\nfrom . import schedule", 0),
        ("tasktune.cli.main", "from tasktune import recipes\nimport torch", 0),
    ],
)
def test_the_checker_catches_every_import_form(module, source, n_bad):
    is_package = module == "tasktune.encoding"
    assert len(violations(source, module, is_package)) == n_bad
