"""Every registered method satisfies the Adapter interface, and callers ask it rather
than branching on the method's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tasktune.adapters import ADAPTERS, Adapter, get_adapter

SRC = Path(__file__).resolve().parents[3] / "src" / "tasktune"


@pytest.mark.parametrize("method", sorted(ADAPTERS))
def test_each_method_module_satisfies_the_interface(method):
    module = get_adapter(method)
    assert isinstance(module, Adapter)
    for flag in ("TRAINS_BASE", "SAVES_TRAINABLE", "SHARES_BASE"):
        assert isinstance(getattr(module, flag), bool), flag


def test_a_method_that_cannot_merge_says_why():
    with pytest.raises(ValueError, match="cannot be merged"):
        get_adapter("prefix").merged(object())
    with pytest.raises(NotImplementedError):
        get_adapter("full").load_named(object(), "x", "name")


def test_no_code_outside_adapters_and_config_compares_a_method_name():
    """`method == "lora"` (or `in ("lora", ...)`) outside adapters/ is a branch on the
    method: ask its module instead (config/ holds the settings and checks no name)."""
    names = set(ADAPTERS)
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "adapters":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in names]
                if consts:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found
