"""Typed dataclass configs, YAML override files and CLI flags, one field to one flag.

A YAML file in `configs/` is a saved set of overrides for one entry point's dataclass
(`load_config(TrainConfig, "configs/train_qwen_14b.yaml", {"max_samples": 10})`). Unknown keys
and wrongly typed values are errors naming the field, never silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from aimo3_recipe.exceptions import ConfigError

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _base_types(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def _coerce(cls: type, name: str, tp: Any, value: Any) -> Any:
    """Check/convert one value against the field's annotation (str from the CLI, YAML scalars)."""
    if value is None:
        return None
    for base in _base_types(tp):
        origin = typing.get_origin(base) or base
        try:
            if origin is bool:
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                    return value.lower() in ("true", "1", "yes")
                continue
            if origin is int and not isinstance(value, bool):
                if isinstance(value, float) and not value.is_integer():
                    continue
                return int(value)
            if origin is float and not isinstance(value, bool):
                return float(value)
            if origin is str:
                return str(value)
            if origin in (list, tuple):
                items = value.split(",") if isinstance(value, str) else list(value)
                (item_tp, *_) = typing.get_args(base) or (str,)
                return origin(_coerce(cls, name, item_tp, v) for v in items)
            if origin is dict and isinstance(value, dict):
                return dict(value)
            if origin is typing.Any:
                return value
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{cls.__name__}.{name} expects {tp}; got {value!r}")


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build `cls` from a dict, rejecting unknown keys and coercing types."""
    types_by_name = _field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: "
                          f"{sorted(types_by_name)}")
    kwargs = {k: _coerce(cls, k, types_by_name[k], v) for k, v in values.items()}
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of field: value; got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> C:
    """Defaults <- YAML file <- explicit overrides (None values in overrides are ignored)."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, values)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type,
                       skip: tuple[str, ...] = ()) -> None:
    """Add `--field-name` for every field (default None, so only given flags override)."""
    docs = field_docs(cls)
    for name, tp in _field_types(cls).items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        bases = _base_types(tp)
        if bases[0] is bool:  # `--flag` alone means true; `bool | str` fields also take auto
            parser.add_argument(flag, dest=name, nargs="?", const="true", default=None,
                                metavar="auto|true|false" if str in bases else "BOOL",
                                help=docs.get(name))
        else:
            parser.add_argument(flag, dest=name, default=None, help=docs.get(name))


def field_docs(cls: type) -> dict[str, str]:
    """Field comments (`x: int = 1  # what x is`) read from the source, for --help. Inherited
    fields (configs built from shared field groups) take their comment from the base class."""
    import inspect
    import re

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, re.MULTILINE):
            docs[m.group(1)] = m.group(2).strip()
    return docs


def config_from_args(cls: type[C], args: argparse.Namespace, config_path: str | None = None) -> C:
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return load_config(cls, config_path, overrides)


def given_fields(cls: type, args: argparse.Namespace, config_path: str | None = None) -> set[str]:
    """The fields a user set, in the YAML file or as flags (the rest keep their defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k for k, v in vars(args).items() if k in names and v is not None}
    return given | (set(read_yaml(config_path)) & names if config_path else set())
