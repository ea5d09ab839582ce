"""Structure of an answer string: tuples, intervals, sets, lists, unions, matrices, relations.

`parse_structure` turns a cleaned answer (`normalize.clean_latex`) into a small tree whose
leaves are single expressions ("atoms"); `equivalence.nodes_equal` compares two trees. Also the
rewrites that make notations comparable: `x < 3` -> `(-\\infty, 3)`, `x = 3` -> `3` when the
left side only names the answer, `1 \\pm \\sqrt2` -> two values, `(0;-2;6)` -> a tuple.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aimo3_recipe.grader.normalize import parse_number


@dataclass(frozen=True)
class Node:
    kind: str  # atom | seq | set | list | matrix | union | rel
    text: str = ""  # atom text; for seq the two brackets, e.g. "(]"; for rel the operator
    items: tuple = ()  # children (Node), for rel (lhs, rhs)
    interval: bool = False  # a seq written as an inequality (`2 < x < 3`): surely an interval


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}


def _split_top(s: str, seps: tuple[str, ...]) -> list[str]:
    """Split at separators outside any brackets (`\\{`/`\\}` count as brackets)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and s.startswith(("\\{", "\\}", "\\langle", "\\rangle"), i):
            depth += 1 if s[i + 1] in "{l" else -1
            i += 2
            continue
        if s.startswith("\\begin", i):
            depth += 1
        elif s.startswith("\\end", i):
            depth -= 1
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0:
            for sep in seps:
                if s.startswith(sep, i) and not (
                    sep[0] == "\\" and s[i + len(sep) : i + len(sep) + 1].isalpha()
                ):
                    parts.append(s[start:i])
                    start = i + len(sep)
                    i = start - 1
                    break
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _outer_bracket(s: str) -> tuple[str, str] | None:
    """If the first bracket of `s` closes at its last character, the two brackets."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return (s[0], s[-1]) if depth == 0 else None


_SIMPLE_VAR = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[a-zA-Z]\([a-z]\)")
_NAME_CMDS = re.compile(
    r"\\(?:frac|overline|angle|triangle|mathrm|mathbf|vec|hat|bar|left|right|operatorname|"
    r"alpha|beta|gamma|theta|phi|varphi|omega|sigma|lambda|mu|tau|rho|delta|epsilon|"
    r"varepsilon|eta|zeta|xi|psi|chi|kappa|nu|Delta|Omega|Phi|Gamma|Theta|Sigma)(?![a-zA-Z])"
)


def _is_name(lhs: str) -> bool:
    """Whether the left side of `lhs = value` only names the answer: `x`, `(p,q)`, `AB`, `f(x)`,
    `|AB|`, `V_1:V_2`, `\\frac{NO}{BO}` (no operators, no numbers outside subscripts)."""
    t = re.sub(r"_\{[^{}]*\}|_\w|\^\{?\\?prime\}?|'", "", lhs)
    t = _NAME_CMDS.sub("", t)
    return (
        bool(re.fullmatch(r"[A-Za-z(),:|{}\s]+", t))
        and bool(re.search(r"[A-Za-z]", t))
        and not re.search(r"\b(?:and|or)\b", t)
    )


_MATRIX = re.compile(  # one matrix: the body may not open another environment
    r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?((?:(?!\\begin\{).)*)\\end\{\1\}", re.DOTALL
)


def parse_structure(s: str) -> Node:
    """Tree of a cleaned answer string."""
    s = s.strip()
    s = re.sub(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s*", "", s)
    s = re.sub(r"\)\s*or\s*\(", "),(", s)
    inner = s[1:-1].strip()
    if (s[:1], s[-1:]) in (("(", ")"), ("[", "]"), ("{", "}")) and _MATRIX.fullmatch(inner):
        s = inner  # [\begin{array}...\end{array}] is the matrix itself
    elif s[:1] == "{" and s[-1:] == "}" and _outer_braces(s):
        return parse_structure(inner)  # plain braces only group: {1,3} is 1,3
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = tuple(
            Node("seq", "()", tuple(Node("atom", c.strip()) for c in r.split("&"))) for r in rows
        )
        return Node("matrix", s, cells)
    parts = _split_top(s, (",", ";", " and ", " or "))
    if len(parts) > 1:
        if all(parts):
            return Node("list", "", tuple(parse_structure(p) for p in parts))
        return Node("atom", s)
    union = _split_top(s, ("\\cup",))
    if len(union) > 1 and all(union):
        return Node("union", "", tuple(parse_structure(p) for p in union))
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        items = _split_top(inner, (",", ";")) if inner else []
        return Node("set", "", tuple(parse_structure(p) for p in items if p))
    br = _outer_bracket(s)
    if br:
        items = _split_top(s[1:-1], (",",))
        if len(items) == 1 and br == ("(", ")"):
            items = _split_top(s[1:-1], (";",))  # (0;-2;6)
        if len(items) > 1 and all(items):
            return Node("seq", br[0] + br[1], tuple(parse_structure(p) for p in items))
    rel = _split_relation(s)
    if rel is not None:
        return rel
    ratio = _split_top(s, (":",))
    if len(ratio) > 1 and all(ratio):
        return Node("seq", "::", tuple(Node("atom", p) for p in ratio))
    if s.count("\\pm") == 1 and "\\mp" not in s:  # 1 \pm \sqrt2 -> {1 + \sqrt2, 1 - \sqrt2}
        a, b = s.split("\\pm")
        if a.strip() and b.strip():
            return Node("list", "", (Node("atom", f"{a}+{b}"), Node("atom", f"{a}-{b}")))
        if not a.strip():
            return Node("list", "", (Node("atom", b), Node("atom", f"-{b}")))
    return Node("atom", s)


def _outer_braces(s: str) -> bool:
    depth = 0
    for i, c in enumerate(s):
        depth += (c == "{") - (c == "}")
        if depth == 0 and i != len(s) - 1:
            return False
    return depth == 0


def _split_relation(s: str) -> Node | None:
    ops = []
    i, depth = 0, 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in ("\\le", "\\ge", "\\ne", "<", ">", "="):
                if s.startswith(op, i) and not (
                    op[0] == "\\" and s[i + len(op) : i + len(op) + 1].isalpha()
                ):
                    ops.append((i, op))
                    i += len(op) - 1
                    break
        i += 1
    if not ops:
        return None
    pieces, last = [], 0
    for pos, op in ops:
        pieces.append(s[last:pos].strip())
        last = pos + len(op)
    pieces.append(s[last:].strip())
    if not all(pieces):
        return None
    names = [op for _, op in ops]
    if len(names) == 1:
        return Node("rel", names[0], (Node("atom", pieces[0]), Node("atom", pieces[1])))
    # chains: a < x < b  ->  interval;  x = y = 3 -> last value
    if (
        len(names) == 2
        and _SIMPLE_VAR.fullmatch(pieces[1])
        and all(o in ("<", "\\le") for o in names)
    ):
        return Node(
            "seq",
            ("(" if names[0] == "<" else "[") + (")" if names[1] == "<" else "]"),
            (Node("atom", pieces[0]), Node("atom", pieces[2])),
            interval=True,
        )
    if (
        len(names) == 2
        and _SIMPLE_VAR.fullmatch(pieces[1])
        and all(o in (">", "\\ge") for o in names)
    ):
        return Node(
            "seq",
            ("(" if names[1] == ">" else "[") + (")" if names[0] == ">" else "]"),
            (Node("atom", pieces[2]), Node("atom", pieces[0])),
            interval=True,
        )
    if all(o == "=" for o in names):
        return Node("rel", "=", (Node("atom", pieces[0]), Node("atom", pieces[-1])))
    return Node("atom", s)


def as_interval(n: Node) -> Node:
    """`x < 3` -> (-inf, 3); `x \\ge 2` -> [2, inf); other nodes unchanged."""
    if n.kind != "rel" or n.text in ("=", "\\ne"):
        return n
    lhs, rhs = n.items[0].text, n.items[1].text
    op = n.text
    flip = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}
    if lhs.startswith("-") and _SIMPLE_VAR.fullmatch(lhs[1:].strip()):  # -x > -1  ->  x < 1
        lhs, rhs, op = lhs[1:].strip(), f"-({rhs})", flip[op]
    if not _SIMPLE_VAR.fullmatch(lhs) and _SIMPLE_VAR.fullmatch(rhs):
        lhs, rhs = rhs, lhs
        op = flip[op]
    elif not _SIMPLE_VAR.fullmatch(lhs):
        return n
    inf = Node("atom", "\\infty")
    ninf = Node("atom", "-\\infty")
    val = Node("atom", rhs)
    if op == "<":
        return Node("seq", "()", (ninf, val), interval=True)
    if op == "\\le":
        return Node("seq", "(]", (ninf, val), interval=True)
    if op == ">":
        return Node("seq", "()", (val, inf), interval=True)
    return Node("seq", "[)", (val, inf), interval=True)


def drop_lhs(n: Node, computed: bool = False) -> Node:
    """`x = 3` -> `3` when the left side only names the answer (`_is_name`). With `computed`
    (the prediction side) also `2+3 = 5` -> `5`: a worked computation (no variables) ending in
    a number; `x+y = 5` stays an equation."""
    if n.kind == "rel" and n.text == "=":
        lhs, rhs = n.items[0].text, n.items[1].text
        arithmetic = not re.search(r"[a-zA-Z]", re.sub(r"\\(?:frac|cdot|times|div|sqrt)", "", lhs))
        if _is_name(lhs) or (computed and arithmetic and parse_number(rhs) is not None):
            return parse_structure(rhs)
    return n


def strip_list_lhs(n: Node) -> Node:
    """`x = 1, 2` (one variable name, several values) -> list of values."""
    if n.kind == "list":
        items = tuple(drop_lhs(i) for i in n.items)
        return Node("list", "", items)
    return n
