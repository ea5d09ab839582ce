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
        base = _base_types(tp)[0]
        if base is bool:
            parser.add_argument(flag, dest=name, nargs="?", const="true", default=None,
                                metavar="BOOL", help=docs.get(name))
        else:
            parser.add_argument(flag, dest=name, default=None, help=docs.get(name))


def field_docs(cls: type) -> dict[str, str]:
    """Field comments (`x: int = 1  # what x is`) read from the source, for --help."""
    import inspect
    import re

    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    docs = {}
    for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, re.M):
        docs[m.group(1)] = m.group(2).strip()
    return docs


def config_from_args(cls: type[C], args: argparse.Namespace, config_path: str | None = None) -> C:
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return load_config(cls, config_path, overrides)


def config_class_for(path: str | Path) -> type:
    """Which dataclass a file in `configs/` overrides, by its name: train_*, eval*, tinker_*."""
    stem = Path(path).stem
    if stem.startswith("tinker"):
        from aimo3_recipe.training.tinker_config import TinkerTrainConfig

        return TinkerTrainConfig
    if stem.startswith("eval"):
        from aimo3_recipe.evaluation.config import EvalConfig

        return EvalConfig
    if stem.startswith("train"):
        from aimo3_recipe.training.config import TrainConfig

        return TrainConfig
    raise ConfigError(f"{path}: config files are named train_*.yaml, eval*.yaml or tinker_*.yaml")
