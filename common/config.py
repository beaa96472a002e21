"""Typed configuration: frozen dataclasses built from YAML/dicts, unknown keys rejected.

Every stage declares its settings as a frozen dataclass with defaults; a pipeline nests them.
`from_dict` builds one from plain data, checking types and naming the dotted key of any problem;
`load_yaml` reads a file; `load_config` is a CLI's file-or-defaults plus overrides; `to_dict` writes the resolved tree back (for `config.yaml` next to
outputs); `apply_overrides` applies dotted `key=value` overrides (YAML-parsed values) to plain data.

Supported field types: bool, int, float, str, pathlib.Path, Enum subclasses, Literal[...],
Optional[X] / X | None, tuple[X, ...], tuple[X, Y], dict[str, X] and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the dotted key and the source."""


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, source: str = "<config>") -> T:
    """Build dataclass `cls` from `data`; missing keys take the defaults, unknown keys are errors."""
    return typing.cast(T, _build_dataclass(cls, {} if data is None else data, prefix="", source=source))


def load_yaml(cls: type[T], path: str | pathlib.Path, overrides: Sequence[str] = ()) -> T:
    """Read a YAML file into `cls`, after applying dotted `key=value` overrides."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return from_dict(cls, apply_overrides(data, overrides), source=str(path))


def load_config(cls: type[T], path: str | pathlib.Path | None, overrides: Sequence[str] = ()) -> T:
    """What every CLI does: the YAML file when given (else the defaults), then `key=value` overrides."""
    if path is not None:
        return load_yaml(cls, path, overrides)
    return from_dict(cls, apply_overrides({}, overrides), source="command line")


def to_dict(obj: Any) -> Any:
    """The plain-data (YAML/JSON-safe) form of a config dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj: Any) -> str:
    """YAML text of a config dataclass tree, keys in declaration order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` applied; values are parsed as YAML scalars."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _build_dataclass(cls: Any, data: Any, prefix: str, source: str, base: Any = None) -> Any:
    """Build `cls` from `data`; keys not given keep `base`'s values (the field's default instance
    for nested sections), so overriding one key of a section keeps its siblings' defaults."""
    where = prefix or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        names = ", ".join(_join(prefix, k) for k in unknown)
        raise ConfigError(f"{source}: unknown key(s) {names}; allowed here: {allowed}")
    kwargs = {}
    for name, value in data.items():
        tp, key = hints[name], _join(prefix, name)
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            inner = getattr(base, name) if base is not None else _field_default(fields[name])
            kwargs[name] = _build_dataclass(tp, value, key, source, inner)
        else:
            kwargs[name] = _convert(tp, value, key, source)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _convert(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{source}: {key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key, source)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = [m.value for m in tp]
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {choices}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {key}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args if args else (str, Any)
        return {
            _convert(key_tp, k, f"{key}.{k}", source): _convert(val_tp, v, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            hint = f" (quote it: '{value}')" if isinstance(value, (bool, int, float)) else ""
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}{hint}")
        return value
    if tp is pathlib.Path:
        if not isinstance(value, (str, pathlib.PurePath)):
            raise ConfigError(f"{source}: {key}: expected a path, got {value!r}")
        return pathlib.Path(value)
    raise TypeError(f"config field {key}: unsupported type {tp!r}")
