"""Typed dataclass configs as one tree, YAML override files and the paths that address them.

An entry point's config is a dataclass whose sections are nested dataclasses
(`TrainConfig.sft`, `TrainConfig.rl`, `TrainConfig.rl.loss`); every setting is addressed by its
path, `rl.group_size`, the same in YAML (nested under `rl:`), on the local command line
(`--rl.group-size`, config_cli.py) and on Tinker's (`rl.group_size=`, chz). A YAML file in
`configs/` is a saved set of overrides (`load_config(TrainConfig, "configs/x.yaml", {...})`).

An entry point may declare, as class variables:
    ALIASES  {old flat name: (paths it sets, ...)}: accepted spellings (the seed's flags,
             e.g. `max_samples` -> sft.max_samples and rl.max_samples)
    RENAMED  {old name: new path(s)}: names that changed; they are errors naming the new path.
A flat name that is the last part of some path (`group_size` for `rl.group_size`) is an error
naming that path too; any other unknown key or wrongly typed value is an error naming the
field. Nothing is silently ignored.
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


# -- the tree ------------------------------------------------------------------------------
def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved annotation} of a dataclass (init fields only)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def is_section(tp: Any) -> bool:
    """A field whose type is itself a config dataclass is a section of the tree."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def leaf_paths(cls: type, prefix: str = "") -> dict[str, Any]:
    """{"rl.loss.epsilon_low": float, ...}: every setting of the tree under `cls`, in order."""
    out: dict[str, Any] = {}
    for name, tp in field_types(cls).items():
        if is_section(tp):
            out.update(leaf_paths(tp, f"{prefix}{name}."))
        else:
            out[prefix + name] = tp
    return out


def section_paths(cls: type, prefix: str = "") -> dict[str, type]:
    """{"": cls, "sft": SFTConfig, "rl": GRPOConfig, "rl.loss": LossConfig, ...}."""
    out = {prefix.rstrip("."): cls}
    for name, tp in field_types(cls).items():
        if is_section(tp):
            out.update(section_paths(tp, f"{prefix}{name}."))
    return out


def get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def replace_path(obj: C, path: str, value: Any) -> C:
    """A copy of `obj` with the setting at `path` changed (sections copied on the way)."""
    head, _, rest = path.partition(".")
    new = replace_path(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})  # type: ignore[type-var]


def dashed(path: str) -> str:
    """The command-line flag of a path: rl.loss.epsilon_low -> --rl.loss.epsilon-low."""
    return "--" + path.replace("_", "-")


# -- old spellings -------------------------------------------------------------------------
def aliases(cls: type) -> dict[str, tuple[str, ...]]:
    return dict(getattr(cls, "ALIASES", {}))


def new_spelling(cls: type, name: str) -> tuple[str, ...]:
    """The paths an old flat `name` moved to (empty: it never was a setting)."""
    renamed = getattr(cls, "RENAMED", {})
    if name in renamed:
        target = renamed[name]
        return (target,) if isinstance(target, str) else tuple(target)
    return tuple(p for p in leaf_paths(cls) if "." in p and p.rsplit(".", 1)[1] == name)


def moved_error(cls: type, name: str, paths: tuple[str, ...], flag: bool = False) -> ConfigError:
    if flag:
        return ConfigError(f"{dashed(name)} moved: now {' or '.join(map(dashed, paths))} "
                           "(settings are grouped by section: --help lists them)")
    head, _, rest = paths[0].partition(".")
    return ConfigError(f"{cls.__name__}: {name!r} moved: now {' or '.join(paths)} (in YAML "
                       f"nested under its section, `{head}:` then `  {rest}: ...`; on a "
                       f"key=value command line `{paths[0]}=...`)")


def expand_aliases(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Flat {path or alias: value} -> {path: value}; a moved name is an error naming its new
    path, an unknown one an error listing the valid settings."""
    paths = leaf_paths(cls)
    sections = section_paths(cls)
    table = aliases(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in paths:
            out[key] = value
        elif key in table:
            for target in table[key]:
                out.setdefault(target, value)  # an explicit path wins over its alias
        elif key in sections and key:
            raise ConfigError(f"{cls.__name__}.{key} is a section: set its fields "
                              f"({', '.join(sorted(p for p in paths if p.startswith(key + '.')))})")
        elif "." not in key and new_spelling(cls, key):
            raise moved_error(cls, key, new_spelling(cls, key))
        else:
            raise ConfigError(f"unknown {cls.__name__} field {key!r}; valid: "
                              f"{sorted(paths) + sorted(table)}")
    return out


# -- values --------------------------------------------------------------------------------
def _base_types(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def coerce(owner: str, tp: Any, value: Any) -> Any:
    """Check/convert one value against a field's annotation (str from the CLI, YAML scalars)."""
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
                return origin(coerce(owner, item_tp, v) for v in items)
            if origin is dict and isinstance(value, dict):
                return dict(value)
            if origin is typing.Any:
                return value
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{owner} expects {tp}; got {value!r}")


def flatten(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML-style {"rl": {"group_size": 8}} (or dotted keys) -> {"rl.group_size": 8}."""
    sections = section_paths(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = prefix + str(key)
        if isinstance(value, dict) and path in sections:
            out.update(flatten(cls, value, path + "."))
        else:
            out[path] = value
    return out


def build(cls: type[C], values: dict[str, Any], base: Any = None) -> C:
    """`cls` (or a copy of `base`) with {path: value} applied, values coerced to their types.
    A section that is set starts from the entry point's default for it (a default_factory may
    differ from the section class's own defaults)."""
    types_by_name = field_types(cls)
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = coerce(f"{cls.__name__}.{head}", types_by_name[head], value)
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for head, sub in nested.items():
        if base is not None:
            start = getattr(base, head)
        else:
            f = defaults[head]
            start = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
        direct[head] = build(types_by_name[head], sub, start)
    if base is not None:
        return dataclasses.replace(base, **direct)
    return cls(**direct)


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build `cls` from nested and/or dotted values, rejecting unknown keys."""
    return build(cls, expand_aliases(cls, flatten(cls, values)))


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of field: value; got {type(data).__name__}")
    return data


def yaml_values(cls: type, path: str | Path | None) -> dict[str, Any]:
    """A YAML file's settings as {path: value} (aliases expanded, old keys rejected)."""
    if not path:
        return {}
    try:
        return expand_aliases(cls, flatten(cls, read_yaml(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(cls: type[C], path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> C:
    """Defaults <- YAML file <- explicit overrides (paths or aliases; None values ignored)."""
    values = yaml_values(cls, path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(expand_aliases(cls, flatten(cls, given)))
    return build(cls, values)


def flat_kwargs(renames: dict[str, str] | None = None, leaves: bool = True):
    """Class decorator: the constructor also takes settings by their flat names, as aliases
    onto the tree (`RLMathConfig(batch_size=4, epsilon_low=0.1)` sets rl.batch_size and
    rl.loss.epsilon_low), plus `renames` ({old keyword: path}) and the class's ALIASES. With
    `leaves`, any leaf name that is unique in the tree is accepted; otherwise only the
    declared ones."""

    def wrap(cls):
        import functools

        init = cls.__init__

        @functools.wraps(init)  # the real signature stays visible (chz, inspect, help)
        def __init__(self, **kwargs: Any) -> None:
            own = {f.name for f in dataclasses.fields(cls)}
            table = aliases(cls)
            direct: dict[str, Any] = {}
            nested: dict[str, Any] = {}
            for key, value in kwargs.items():
                key = (renames or {}).get(key, key)
                if key in own:
                    direct[key] = value
                elif key in table:
                    nested.update(dict.fromkeys(table[key], value))
                elif "." in key and key in leaf_paths(cls):
                    nested[key] = value
                else:
                    found = new_spelling(cls, key)
                    if leaves and len(found) == 1:
                        nested[found[0]] = value
                    elif found:
                        raise moved_error(cls, key, found)
                    else:
                        raise TypeError(f"{cls.__name__}() got an unexpected keyword {key!r}")
            for path, value in nested.items():
                head, rest = path.split(".", 1)
                if head not in direct:
                    f = next(f for f in dataclasses.fields(cls) if f.name == head)
                    direct[head] = f.default_factory()  # type: ignore[misc]
                direct[head] = replace_path(direct[head], rest, value)
            init(self, **direct)

        cls.__init__ = __init__
        return cls

    return wrap


# -- command lines -------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """Field comments (`x: int = 1  # what x is`) read from the source, for --help. Fields
    inherited from a group of fields take their comment from the group."""
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


def section_doc(cls: type) -> str | None:
    """The first line of a section's own docstring (None for dataclass's generated one)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(cls.__name__ + "("):
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


def _defaults(cls: type) -> Any:
    try:
        return cls()
    except TypeError:  # a config with required fields: no defaults to show
        return None


def _help(doc: str | None, default: Any) -> str:
    text = (doc or "") + ("" if default is _NO_DEFAULT else f" [default: {default}]")
    return text.replace("%", "%%")


_NO_DEFAULT = object()


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _add_flag(group, flag: str, dest: str, tp: Any, help: str) -> None:
    bases = _base_types(tp)
    if bases[0] is bool:  # `--flag` alone means true; `bool | str` fields also take auto
        group.add_argument(flag, dest=dest, nargs="?", const="true", default=None,
                           metavar="auto|true|false" if str in bases else "BOOL", help=help)
    else:
        group.add_argument(flag, dest=dest, default=None, help=help,
                           metavar=_METAVARS.get(typing.get_origin(bases[0]) or bases[0], "V"))


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type,
                       skip: tuple[str, ...] = ()) -> None:
    """A flag per setting, grouped by section in --help with the field comments:
    `--learning-rate` at the top level, `--rl.group-size` in section rl. Defaults are None,
    so only given flags override. The class's ALIASES get flags too; old flat names of moved
    settings get hidden flags that `config_from_args` turns into an error naming the new one."""
    defaults = _defaults(cls)
    for path, section in section_paths(cls).items():
        group = parser if not path else parser.add_argument_group(
            f"{path} ({section.__name__})", section_doc(section))
        docs = field_docs(section)
        prefix = path + "." if path else ""
        for name, tp in field_types(section).items():
            if is_section(tp) or (not path and name in skip):
                continue
            default = get_path(defaults, prefix + name) if defaults is not None else _NO_DEFAULT
            _add_flag(group, dashed(prefix + name), prefix + name, tp, _help(docs.get(name), default))
    table = aliases(cls)
    if table:
        group = parser.add_argument_group("aliases", "flat spellings kept from earlier versions")
        leaves = leaf_paths(cls)
        for name, targets in table.items():
            _add_flag(group, dashed(name), name, leaves[targets[0]],
                      f"sets {', '.join(targets)}")
    for name in _moved_names(cls):
        parser.add_argument(dashed(name), dest="moved:" + name, nargs="?", const="true",
                            default=None, help=argparse.SUPPRESS)


def _moved_names(cls: type) -> list[str]:
    """Old flat names that are now a path (so a flag by that name is an error naming it)."""
    taken = set(leaf_paths(cls)) | set(aliases(cls))
    names = {p.rsplit(".", 1)[1] for p in leaf_paths(cls) if "." in p}
    names |= set(getattr(cls, "RENAMED", {}))
    return sorted(n for n in names if n not in taken)


def cli_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """{path: value} of the flags given (aliases expanded; a moved flat flag is an error)."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    for key in given:
        if key.startswith("moved:"):
            name = key.removeprefix("moved:")
            raise moved_error(cls, name, new_spelling(cls, name), flag=True)
    known = set(leaf_paths(cls)) | set(aliases(cls))
    return expand_aliases(cls, {k: v for k, v in given.items() if k in known})


def config_from_args(cls: type[C], args: argparse.Namespace, config_path: str | None = None) -> C:
    """Defaults <- the YAML file <- the flags given."""
    values = yaml_values(cls, config_path)
    values.update(cli_values(cls, args))
    return build(cls, values)


def given_fields(cls: type, args: argparse.Namespace, config_path: str | None = None) -> set[str]:
    """What a user set, in the YAML file or as flags, as they spelled it: paths, and alias
    names unexpanded (`max_samples` sets two sections: a check on one of them must know)."""
    given = set(flatten(cls, read_yaml(config_path))) if config_path else set()
    known = set(leaf_paths(cls)) | set(aliases(cls))
    given |= {k for k, v in vars(args).items() if v is not None and k in known}
    return given


def format_help(cls: type, usage: str) -> str:
    """--help for a key=value command line (chz): each section with its fields' comments."""
    defaults = _defaults(cls)
    lines = [usage, ""]
    for path, section in section_paths(cls).items():
        doc = section_doc(section)
        lines.append(f"{path or 'top level'} ({section.__name__})" + (f": {doc}" if doc else ""))
        docs = field_docs(section)
        prefix = path + "." if path else ""
        for name, tp in field_types(section).items():
            if is_section(tp):
                continue
            shown = repr(get_path(defaults, prefix + name)) if defaults is not None else ""
            lines.append(f"  {prefix + name}={shown:<12} {docs.get(name, '')}")
        lines.append("")
    table = aliases(cls)
    if table:
        lines.append("aliases (flat spellings kept from earlier versions)")
        lines += [f"  {name}=  sets {', '.join(targets)}" for name, targets in table.items()]
    return "\n".join(lines)


def chz_config(cls: type[C], argv: list[str], layer: dict[str, Any] | None = None,
               usage: str = "") -> C:
    """`cls` from `key=value` arguments parsed by chz: `rl.group_size=16`, aliases
    (`group_size=16`) rewritten to their paths first, a moved flat name an error naming its
    path. `layer`: {path: value} defaults of this entry point applied beneath the arguments
    (a nested default_factory alone would be lost when one of its fields is set)."""
    if any(a in ("--help", "-h", "help") for a in argv):
        print(format_help(cls, usage or f"{cls.__name__}: key=value arguments"))
        raise SystemExit(0)
    table = aliases(cls)
    paths = leaf_paths(cls)
    expanded: list[str] = []
    explicit: list[str] = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"{arg!r}: arguments are key=value (e.g. rl.group_size=16)")
        if key in table:
            expanded += [f"{target}={value}" for target in table[key]]
        elif key not in paths and "." not in key and new_spelling(cls, key):
            raise moved_error(cls, key, new_spelling(cls, key))
        else:
            explicit.append(arg)
    import chz  # after the checks above: a moved name is named even without chz installed

    try:  # chz's base of its argument errors (not exported; its location may change)
        from chz.blueprint._entrypoint import EntrypointException
    except ImportError:  # pragma: no cover - then every error building the config
        EntrypointException = Exception

    blueprint = chz.Blueprint(cls)
    if layer:
        blueprint = blueprint.apply(layer, layer_name=f"{cls.__name__} defaults")
    try:  # explicit paths after the alias expansions: they win
        return blueprint.apply_from_argv(expanded + explicit).make()
    except EntrypointException as e:
        cause = e.__cause__ if isinstance(e.__cause__, ConfigError) else None
        raise ConfigError(str(cause or e)) from None
