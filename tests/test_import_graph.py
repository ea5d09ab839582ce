"""The package's import graph between subpackages has no cycle, and the grader sits at the
bottom (it imports nothing of ours but `utils`).

Every module is read with `ast` (not imported), so imports inside functions count too: a lazy
import still couples two subpackages and only hides the cycle until a refactor trips over it.
Nodes are the subpackages (grader, evaluation, inference, training, data, utils, rl, ...) and
the top-level modules (config, models, ...). Imports by string (`python -m ...`, the CLI's
command table) are not imports and are not counted.
"""

from __future__ import annotations

import ast
import pkgutil
from collections import defaultdict
from pathlib import Path

import aimo3_recipe

PKG = aimo3_recipe.__name__
ROOT = Path(aimo3_recipe.__file__).parent

# Back edges that exist today and are owed a fix; each must still exist (so the entry is
# deleted when the edge goes) and nothing else may close a cycle. (`config.config_class_for`,
# config -> training/evaluation, moved into tests/test_config.py: none left.)
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    """Every module of the package, name -> file (packages by their __init__.py)."""
    out = {PKG: ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix=PKG + ".", onerror=lambda _: None):
        rel = Path(*info.name.split(".")[1:])
        path = ROOT / rel / "__init__.py" if info.ispkg else (ROOT / rel).with_suffix(".py")
        if path.is_file():
            out[info.name] = path
    return out


def _imported(name: str, path: Path, is_pkg: bool) -> set[str]:
    """Absolute names of our modules that a module imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from aimo3_recipe import grader` imports the subpackage grader
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m == PKG or m.startswith(PKG + ".")}


def _node(module: str, known: set[str]) -> str | None:
    """The subpackage or top-level module a module name belongs to (None: the root itself,
    or an attribute that is no module: `from aimo3_recipe.grader import verify`)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    top = f"{PKG}.{parts[1]}"
    return parts[1] if top in known else None


def import_graph() -> dict[str, dict[str, list[str]]]:
    """{importer node: {imported node: [the modules that import it]}}, self-imports left out."""
    mods = _modules()
    known = set(mods)
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, path in mods.items():
        src = _node(name, known)
        if src is None:
            continue
        graph[src]  # every node appears, also one that imports nothing
        for target in _imported(name, path, path.name == "__init__.py"):
            dst = _node(target, known)
            if dst is not None and dst != src and name not in graph[src][dst]:
                graph[src][dst].append(name)
    return {k: dict(v) for k, v in graph.items()}


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(graph: dict[str, dict[str, list[str]]], comp: list[str]) -> str:
    edges = [f"{a} -> {b} (in {', '.join(graph[a][b])})"
             for a in comp for b in comp if b in graph.get(a, {})]
    return " <-> ".join(comp) + ": " + "; ".join(edges)


def test_graph_finds_our_subpackages_and_function_level_imports():
    """The walker sees what it must: the subpackages, and an import inside a function
    (evaluation imports inference only inside functions)."""
    graph = import_graph()
    assert {"grader", "evaluation", "inference", "utils", "data", "training"} <= set(graph)
    assert "inference" in graph["evaluation"]
    assert "grader" in graph["inference"]


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    pruned = {a: {b: m for b, m in deps.items() if (a, b) not in KNOWN_BACK_EDGES}
              for a, deps in graph.items()}
    cycles = [_describe(pruned, c) for c in _cycles(pruned)]
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(cycles)


def test_known_back_edges_still_exist():
    """When a known back edge is removed, delete it from KNOWN_BACK_EDGES too."""
    graph = import_graph()
    gone = {(a, b) for a, b in KNOWN_BACK_EDGES if b not in graph.get(a, {})}
    assert not gone, f"fixed, remove from KNOWN_BACK_EDGES: {sorted(gone)}"


def test_evaluation_inference_grader_layering():
    """The harness imports inference, inference imports the grader, nothing imports back."""
    graph = import_graph()
    assert "evaluation" not in graph["inference"] and "evaluation" not in graph["grader"]
    assert "inference" not in graph["grader"]
    for sub in ("evaluation", "inference", "training", "rl", "data", "models", "config"):
        if sub in graph:
            assert sub not in graph.get("grader", {}), sub


def test_grader_is_at_the_bottom():
    graph = import_graph()
    assert set(graph.get("grader", {})) <= {"utils"}, graph["grader"]


def test_cycle_finder_names_a_cycle():
    toy = {"a": {"b": ["p.a.x"]}, "b": {"c": ["p.b.y"]}, "c": {"a": ["p.c.z"]}, "d": {"a": []}}
    assert _cycles(toy) == [["a", "b", "c"]]
    assert "c -> a (in p.c.z)" in _describe(toy, ["a", "b", "c"])
