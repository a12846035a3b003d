"""Hostile input, generated: malformed data files and configs thrown at the loaders and
the config parser. Every case either loads or ends in one of our clear errors naming the
file/row or the key; never another exception, never a row dropped without a count.

A fixed number of examples and a fixed seed (``derandomize``), so CI runs the same cases."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasktune.config import ConfigError, RunConfig, load_config
from tasktune.data.files import DataFileError, load_file

FUZZ = settings(max_examples=150, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# JSON values, biased towards the shapes a row should have.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
KEYS = ["instruction", "input", "output", "system", "history", "question", "answer"]
rows = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), st.one_of(st.text(max_size=20), values), max_size=6),
    values,
)


def _write(path: Path, body: str, bom: bool, crlf: bool) -> Path:
    if crlf:
        body = body.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8", "surrogatepass"))
    return path


def _check(path: Path, n_rows: int | None):
    """load_file must load (every row accounted for) or raise DataFileError naming the file."""
    for mode in ("error", "skip"):
        try:
            result = load_file(path, on_bad_row=mode)
        except DataFileError as exc:
            assert exc.problems and all(line.startswith(str(path)) for line in exc.problems), exc.problems
            continue
        if n_rows is not None:  # nothing silently dropped: loaded + reported = rows in the file
            assert len(result.examples) + len(result.bad_rows) == n_rows
        assert all(re.match(re.escape(str(path)) + r":\d+: ", line) for line in result.bad_rows)
        if mode == "error":
            assert not result.bad_rows


@FUZZ
@given(data=st.lists(rows, max_size=6), bom=st.booleans(), crlf=st.booleans())
def test_json_lines_files(tmp_path, data, bom, crlf):
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in data)
    _check(_write(tmp_path / "rows.jsonl", body, bom, crlf), len(data))


@FUZZ
@given(data=st.lists(rows, max_size=6), bom=st.booleans(), crlf=st.booleans())
def test_json_array_files(tmp_path, data, bom, crlf):
    body = json.dumps(data, ensure_ascii=False, indent=1)
    _check(_write(tmp_path / "rows.json", body, bom, crlf), len(data))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes(tmp_path, raw):
    path = tmp_path / "junk.jsonl"
    path.write_bytes(raw)
    _check(path, None)


@FUZZ
@given(lines=st.lists(st.text(max_size=40), max_size=6), bom=st.booleans(), crlf=st.booleans())
def test_arbitrary_text_lines(tmp_path, lines, bom, crlf):
    text = "\n".join(lines)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be written as UTF-8 text
        return
    _check(_write(tmp_path / "text.jsonl", text, bom, crlf), None)


# Configs: real keys at every level, unknown keys, and values of every type.
SECTIONS = {
    "train": ["max_steps", "lr", "batch_size", "grad_accum", "schedule", "max_minutes", "stop_at", "warmup_steps"],
    "data": ["task", "train_size", "arithmetic", "file"],
    "eval": ["max_examples", "every", "metric", "batch_size"],
    "adapter": ["method", "lora", "prefix", "freeze"],
    "encoding": ["template", "max_length", "overlong", "system_prompt"],
    "generate": ["max_new_tokens", "do_sample", "temperature"],
}
config_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=2))
section = st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.dictionaries(st.sampled_from(SECTIONS[name]) | st.text(max_size=8), config_values, max_size=4) | scalars,
    )
)
top = st.dictionaries(st.sampled_from(["model", "seed", "output_dir", "dtype"]) | st.text(max_size=8), config_values, max_size=3)


def _check_config(path: Path, overrides: list[str]):
    try:
        load_config(path, overrides)
    except ConfigError as exc:
        text = str(exc)
        assert text.startswith(str(path)) and "problem(s) in the configuration" in text
        # Each problem names a key (dotted path), an override, or the file's syntax.
        lines = [line.strip() for line in text.splitlines()[1:] if line.strip().startswith("- ")]
        named = "|".join(f.name for f in dataclasses.fields(RunConfig))
        pattern = rf"- (({named})\b|unknown key |override |not valid YAML|the top level|not UTF-8)"
        assert lines and all(re.match(pattern, line) for line in lines), text


@FUZZ
@given(sections=st.lists(section, max_size=3), extra=top)
def test_configs(tmp_path, sections, extra):
    import yaml

    raw = {**extra, **dict(sections)}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    _check_config(path, [])


@FUZZ
@given(overrides=st.lists(st.text(max_size=30), max_size=3))
def test_config_overrides(tmp_path, overrides):
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {max_steps: 5}\n", encoding="utf-8")
    _check_config(path, overrides)


# Values made of YAML's own punctuation: most are broken YAML ("[", "{a", "*x", "'").
yaml_values = st.text(alphabet="[]{}:,'\"&*!|>%@`-# ab1", max_size=10)


@FUZZ
@example(overrides=["train.lr=["])
@example(overrides=["train.lr={", "data.file.path='open"])
@example(overrides=["seed=2020-13-45", "train.lr=!!int x", "data.file.path=a\0b"])
@given(overrides=st.lists(st.tuples(st.sampled_from(["train.lr", "train.max_steps", "data.file.path", "model", "x.y"]),
                                    yaml_values).map("=".join), max_size=3))
def test_config_overrides_with_broken_yaml(tmp_path, overrides):
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {max_steps: 5}\n", encoding="utf-8")
    _check_config(path, overrides)


@FUZZ
@given(raw=st.binary(max_size=120))
def test_config_files_of_arbitrary_bytes(tmp_path, raw):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(raw)
    _check_config(path, [])


def test_fuzz_checks_can_fail(tmp_path):
    """The checker itself rejects a silent drop and an error without the file name."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    with pytest.raises(AssertionError):
        _check(path, 2)  # one row in the file, but told two: a "dropped" row is caught
