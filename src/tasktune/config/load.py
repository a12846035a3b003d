"""The one loader of a run's settings: YAML file + ``key=value`` overrides -> a frozen,
validated :class:`RunConfig`, every problem reported at once in one :class:`ConfigError`."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from tasktune.config.run import RunConfig

__all__ = ["ConfigError", "load_config", "config_to_dict", "field_docs"]


class ConfigError(ValueError):
    """Every problem found in one configuration, listed together."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the docstring written under it."""
    source = inspect.getsource(cls)
    tree = ast.parse(source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())  # type: ignore[attr-defined]
    return docs


def _coerce(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Check ``value`` against type hint ``tp``; returns the converted value or None."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errs: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, arg, where, trial)
            if not trial:
                return out
            errs.extend(trial)
        problems.append(errs[0] if errs else f"{where}: invalid value {value!r}")
        return None
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
            return None
        return _build(tp, value, where + ".", problems)
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return None
        kt, vt = args
        return {_coerce(k, kt, f"{where}.{k}", problems): _coerce(v, vt, f"{where}.{k}", problems) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            return None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                problems.append(f"{where}: expected {len(args)} values, got {list(value)!r}")
                return None
            return tuple(_coerce(v, t, f"{where}[{i}]", problems) for i, (v, t) in enumerate(zip(value, args)))
        inner = args[0]
        return origin(_coerce(v, inner, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML reads 2e-3 as a string (it wants 2.0e-3)
            return float(value)
        except ValueError:
            pass
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        problems.append(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return None
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean {prefix}{near[0]!r}?" if near else f"; valid keys: {', '.join(names)}"
            problems.append(f"unknown key {prefix}{key!r}{hint}")
            continue
        kwargs[key] = _coerce(value, hints[key], prefix + key, problems)
    return cls(**kwargs) if not problems else None


FILE_KEYS = ("data.file.path", "data.file.eval_path")
"""Settings that name a file: a relative one is read from the config file's folder (from
the current folder when given as an override) and stored absolute, so a run's saved
config.yaml finds its data from wherever `tasktune eval --run` is called."""


def _anchored(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and "\0" not in value and not Path(value).expanduser().is_absolute():
        return str((base / value).resolve())
    return value  # not a path string: the type and value checks report it


def _anchor_files(tree: dict[str, Any], base: Path) -> None:
    for dotted in FILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _anchored(node[leaf], base)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key written twice in one mapping is an
    error: PyYAML keeps the last silently, so a second ``train:`` section would drop the
    first without a word."""


def _unique_mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, it is not a key
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            again = key in first
        except TypeError:  # an unhashable key: the safe constructor below says so
            continue
        if again:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is written twice in one mapping (first on line {first[key] + 1}): keep one "
                "(YAML would silently keep the last)", key_node.start_mark)
        first[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate it.

    Args:
        path: YAML file; None starts from the defaults.
        overrides: Dotted assignments such as ``train.lr=1e-3``; values are parsed as YAML.

    Returns:
        The frozen, validated configuration.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: unknown keys, wrong types or invalid values (all of them, at once).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            loaded = yaml.load(p.read_text(encoding="utf-8-sig"), Loader=_UniqueKeys)
        except UnicodeDecodeError as exc:
            raise ConfigError(source, [f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, ["the top level must be a mapping of keys to values"])
        raw = loaded or {}
        _anchor_files(raw, p.resolve().parent)
    problems: list[str] = []
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value, e.g. train.max_steps=100")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a YAML date or tag that does not parse
            reason = str(getattr(exc, "problem", None) or exc).strip()
            problems.append(f"override {item!r}: the value {text!r} is not valid YAML ({reason}); quote a string "
                            f"(e.g. {key.strip()}='\"{text}\"') or write a list as [a, b]")
            continue
        _set_path(raw, key.strip(), _anchored(value, Path.cwd()) if key.strip() in FILE_KEYS else value)
    if problems:
        raise ConfigError(source, problems)
    cfg = _build(RunConfig, raw, "", problems)
    if problems:
        raise ConfigError(source, problems)
    problems = cfg.problems()
    if problems:
        raise ConfigError(source, problems)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (tuples as lists), ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
