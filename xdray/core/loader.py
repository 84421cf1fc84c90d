"""Strict typed configuration: frozen dataclasses built from YAML mappings, `--set` overrides.

The machinery only; each stage declares its own schema (`xdray/<stage>/schema.py`) and
`xdray.config` composes them into the experiment. Values are checked against the dataclasses' type
hints; every error names the dotted key (the caller adds the file): unknown keys (with a "did you
mean"), wrong types, values out of range (`require` in a `__post_init__`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from xdray.core.errors import ConfigError


class FieldError(ValueError):
    """Raised by `__post_init__` checks; the loader prefixes the dotted path and the file."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def require(condition: bool, key: str, message: str) -> None:
    """Raise FieldError(key, message) unless condition holds."""
    if not condition:
        raise FieldError(key, message)


def positive(obj: Any, *keys: str) -> None:
    """Require each named field of `obj` to be > 0."""
    for key in keys:
        value = getattr(obj, key)
        require(value > 0, key, f"must be > 0, got {value!r}")


def digest(value: Any, length: int = 16) -> str:
    """sha256 of a JSON-able value with sorted keys, as hex: the one way xdray fingerprints
    settings (teacher inputs, transfer plans, trial keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}s"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the type hint `tp` and convert it (lists to tuples, mappings to
    dataclasses). Raises FieldError(key, ...) on a mismatch."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except FieldError:
                continue
        raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
        key_type, value_type = typing.get_args(tp)
        return {_convert(k, key_type, key): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise FieldError(key, f"expected a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise FieldError(dotted, f"unknown key{hint}; known keys here: {', '.join(names)}")
        kwargs[key] = _convert(value, hints[key], dotted)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FieldError(f"{prefix}.{missing[0]}" if prefix else missing[0], "is required")
    try:
        return cls(**kwargs)
    except FieldError as err:  # a __post_init__ check: make its key absolute
        raise FieldError(f"{prefix}.{err.key}" if prefix else err.key, err.message) from None


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", yaml-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. student.hidden_size=200")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {err}") from None


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `raw` with dotted keys set (intermediate mappings created as needed)."""
    result = _deep_copy(raw)
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    """Fresh dicts and lists all the way down. Not copy.deepcopy: that keeps a YAML alias (`*base`)
    the same object as its anchor (`&base`), so `--set` on one path would change the other too."""
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def read_yaml(path: Path) -> Any:
    """yaml.safe_load a file, turning I/O and syntax errors into ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


def config_to_dict(cfg: Any) -> Any:
    """A plain YAML-safe structure (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def build_checked(cls: type, values: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """build_dataclass, with a FieldError turned into a ConfigError naming `source` and the key."""
    try:
        return build_dataclass(cls, values, prefix)
    except FieldError as err:
        raise ConfigError(f"{source}: {err.key}: {err.message}") from None
