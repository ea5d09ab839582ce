"""Configs carry no field that nothing reads (the one-definition rule of the config tree is
tests/test_config_tree.py's).

"Read" is checked on the source with `ast` (nothing is imported): a field `x` of a config
class counts as read when, outside that class's own body, some module of the package has an
attribute access `.x` or the string "x" (getattr, keep-lists, rename maps) or a config path
ending in it ("sft.x", read with config.get_path). Validation in the
class's own `__post_init__` does not count. Limits: names are matched, not types, so a field
named like some other object's attribute passes (a missed finding, never a false one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aimo3_recipe

PKG = Path(aimo3_recipe.__file__).parent
# dataclasses with these name endings are configs (or groups of config fields)
CONFIG_SUFFIXES = ("Config", "Fields", "Settings")
# Configs whose reader is still being written: their unread fields are tolerated while the
# reader module (relative to the package) does not exist. Delete an entry when it lands.
AWAITING_READER: dict[str, str] = {}
# Unread fields found and owed a fix: each must still be unread (delete the entry when it is
# read) and no other may appear.
KNOWN_UNREAD: set[tuple[str, str]] = set()


def _is_dataclass(node: ast.ClassDef) -> bool:
    for d in node.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) == "dataclass":
            return True
    return False


def _fields(node: ast.ClassDef) -> list[str]:
    return [s.target.id for s in node.body
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            and "ClassVar" not in ast.unparse(s.annotation)]


def unread_fields(root: Path) -> dict[str, list[str]]:
    """{"path:Class": [fields nothing outside the class reads]} for every config under root."""
    trees = {p: ast.parse(p.read_text(), str(p)) for p in sorted(root.rglob("*.py"))}
    configs = [(p, n) for p, t in trees.items() for n in ast.walk(t)
               if isinstance(n, ast.ClassDef) and _is_dataclass(n)
               and n.name.endswith(CONFIG_SUFFIXES)]
    out = {}
    for path, cls in configs:
        inside = {id(n) for n in ast.walk(cls)}
        names: set[str] = set()
        for tree in trees.values():
            for n in ast.walk(tree):
                if id(n) in inside:
                    continue
                if isinstance(n, ast.Attribute):
                    names.add(n.attr)
                elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                    names.add(n.value)
                    names.update(n.value.split("."))  # a path of the tree: "sft.cot_dataset"
        unread = [f for f in _fields(cls) if f not in names]
        if unread:
            out[f"{path.relative_to(root)}:{cls.name}"] = unread
    return out


def test_every_config_field_is_read_somewhere():
    found = unread_fields(PKG)
    awaiting = {key: fields for key, fields in found.items()
                if key.split(":")[1] in AWAITING_READER
                and not (PKG / AWAITING_READER[key.split(":")[1]]).exists()}
    unread = {(k, f) for k, fields in found.items() if k not in awaiting for f in fields}
    new = sorted(unread - KNOWN_UNREAD)
    assert not new, ("config fields that nothing reads (use them, or delete them; an RL-only "
                     f"field belongs in the RL config, not the SFT one): {new}")
    fixed = sorted(KNOWN_UNREAD - unread)
    assert not fixed, f"read now: remove from KNOWN_UNREAD: {fixed}"


def test_the_checker_finds_an_unread_field(tmp_path):
    (tmp_path / "cfg.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass RunConfig:\n"
        "    used: int = 1\n    forgotten: int = 2\n    by_name: int = 3\n\n"
        "    def __post_init__(self):\n        assert self.forgotten >= 0\n")
    (tmp_path / "main.py").write_text(
        "def run(c):\n    return c.used + getattr(c, 'by_name')\n")
    assert unread_fields(tmp_path) == {"cfg.py:RunConfig": ["forgotten"]}


@pytest.mark.parametrize("flag", ["--save-samples", "--sample-save-rate", "--samples-filename",
                                  "--eval-steps", "--eval-samples"])
def test_train_cli_accepts_the_rl_flags_of_the_spec(flag):
    from aimo3_recipe.training.train import build_parser

    value = {"--save-samples": "true", "--samples-filename": "s.jsonl"}.get(flag, "1")
    args = build_parser().parse_args(["--stage", "rl", flag, value])
    assert getattr(args, flag[2:].replace("-", "_")) == value
