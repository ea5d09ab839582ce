"""Equivalence of a predicted final answer and a reference answer.

Order of checks (cheapest first; most benchmark answers never reach sympy):
1. cleaned strings equal (`normalize.clean_latex`);
2. multiple-choice letters and text answers (string rules, never sympy: `yes` is not `y*e*s`);
3. structure: tuples/intervals (ordered, brackets must match), sets and bare lists (unordered),
   unions, matrices, equations and single-variable inequalities (turned into intervals),
   `x = 3` vs `3`; compared element by element;
   (tree: `structure.py`);
4. atoms: exact rational arithmetic (`normalize.parse_number`), then a complexity guard that
   refuses blow-ups (`10^{10^{10}}`, `1000!`) without trying, then mpmath evaluation of our own
   parse (`fast_eval`), and only when that is unsure sympy in a worker process (`worker_pool`)
   under a hard deadline.

Every comparison also reports a status (`compare` -> (equal, status)): "ok", or why a "not
equal" may not be a real answer: "timeout" (the deadline passed), "too_complex" (refused by the
complexity guard), "error" (the sympy worker crashed or could not start). The status belongs to
the call, so threads and processes never mix their counts.

A false positive is worse than a false negative (an RL reward for a wrong answer teaches the
model to be wrong), so ambiguous cases are "not equal": a decimal matches an exact value only
when it is that value rounded to >= 3 places (or the reference itself is the rounded decimal),
a set never equals a tuple, `(1,2)` never equals `[1,2]` (rounding rules: `tolerance.py`).
"""

from __future__ import annotations

import re
import threading
import time

from aimo3_recipe.grader.fast_eval import fast_equal, fast_relation_equal
from aimo3_recipe.grader.normalize import (
    MAX_ANSWER_CHARS,
    Number,
    clean_latex,
    compact,
    decimal_comma,
    format_fraction,
    parse_number,
    split_modulus,
)
from aimo3_recipe.grader.structure import (
    Node,
    as_interval,
    drop_lhs,
    parse_structure,
    strip_list_lhs,
)
from aimo3_recipe.grader.tolerance import rounded_equal

MAX_SYMPY_CHARS = 400  # atoms longer than this are compared as strings only


STATUSES = ("ok", "timeout", "too_complex", "error")


# the problem asks for the answers in an order: bare lists are then compared in order
_ORDER_WORDS = re.compile(
    r"\b(?:respectively|in (?:that|this|the same|the given|the following|increasing|decreasing|"
    r"ascending|descending|alphabetical|numerical) order|in order|ordered (?:list|triple|tuple|"
    r"sequence)|from (?:least|smallest|lowest|greatest|largest|highest) to)\b",
    re.IGNORECASE,
)
# the problem is about intervals: `(2, 3)` is then an interval, not a point
_INTERVAL_WORDS = re.compile(
    r"interval|inequalit|\bdomain\b|\brange\b|for (?:what|which) (?:real )?(?:values|numbers|x)"
    r"|all (?:real )?(?:values|numbers) of|solution set",
    re.IGNORECASE,
)


class _Ctx:
    """Per-call deadline, what the problem says about order and intervals, and what went
    wrong on the way (each makes a False verdict unsure)."""

    def __init__(self, timeout: float, problem: str | None = None) -> None:
        self.deadline = time.monotonic() + timeout
        self.ordered = bool(problem and _ORDER_WORDS.search(problem))
        self.interval_context = bool(problem and _INTERVAL_WORDS.search(problem))
        self.timed_out = False  # a sympy call or the set matching hit the deadline
        self.refused = False  # an atom was refused by the complexity guard
        self.worker_error = False  # the sympy worker crashed or could not start

    def status(self, equal: bool) -> str:
        """"ok" for a True verdict (it stands whatever else happened), else the first reason
        the False verdict is unsure: timeout, too_complex, error."""
        if equal:
            return "ok"
        if self.timed_out:
            return "timeout"
        if self.refused:
            return "too_complex"
        if self.worker_error:
            return "error"
        return "ok"


# ---------------------------------------------------------------- comparison


def nodes_equal(p: Node, r: Node, ctx: _Ctx) -> bool:
    """Predicted node vs reference node."""
    p, r = as_interval(p), as_interval(r)
    if p.kind == "rel" and r.kind != "rel":
        p = as_interval(drop_lhs(p, computed=True))
    if r.kind == "rel" and p.kind != "rel":
        r = as_interval(drop_lhs(r))
    named = _named_values(p), _named_values(r)
    if named[0] is not None and named[1] is not None and set(named[0]) == set(named[1]):
        # a = 1, b = 2 vs b = 2, a = 1: the names pair the values, whatever the order
        return all(nodes_equal(named[0][k], named[1][k], ctx) for k in named[0])
    if p.kind == "list" and r.kind == "union":  # x < 2 or x > 3 vs a union of intervals
        p = _as_union(p)
    if r.kind == "list" and p.kind == "union":
        r = _as_union(r)
    if (p.kind, r.kind) in (("matrix", "atom"), ("atom", "matrix")):
        atom = p if p.kind == "atom" else r
        if "\\begin" not in atom.text:
            return False  # a matrix never equals a scalar
        # matrix arithmetic on one side: let sympy evaluate both
        reply = _sympy({"op": "eq", "a": p.text, "b": r.text}, ctx)
        return bool(reply.get("eq"))
    p, r = strip_list_lhs(p), strip_list_lhs(r)
    if p.kind == "set" and len(p.items) == 1 and r.kind == "atom":
        p = p.items[0]
    if r.kind == "set" and len(r.items) == 1 and p.kind == "atom":
        r = r.items[0]
    if p.kind == "atom" and r.kind == "atom":
        return atoms_equal(p.text, r.text, ctx)
    if p.kind == "rel" and r.kind == "rel":
        return _relations_equal(p, r, ctx)
    if p.kind == "seq" and r.kind == "seq":
        if p.interval and not r.interval and not ctx.interval_context:
            # 2 < x < 3 vs a reference (2, 3): that may be a point (docs/verifier.md); a
            # reference inequality is surely an interval, so the other way round is fine
            if r.text == "()" and not any(_inf_key(i.text) for i in r.items if i.kind == "atom"):
                return False
        return p.text == r.text and _ordered(p.items, r.items, ctx)
    if p.kind == "list" and r.kind == "atom" and len({_node_key(i) for i in p.items}) == 1:
        return nodes_equal(
            p.items[0], r, ctx
        )  # one answer written twice: 15\frac{39}{40}, \frac{639}{40}
    if {p.kind, r.kind} == {"seq", "list"}:
        seq = p if p.kind == "seq" else r
        return seq.text == "()" and _ordered(p.items, r.items, ctx)
    if p.kind == "list" and r.kind == "list" and ctx.ordered:
        return _ordered(p.items, r.items, ctx)  # the problem asks for an order
    if p.kind in ("set", "list") and r.kind in ("set", "list"):
        return _unordered(p.items, r.items, ctx)
    if p.kind == "union" and r.kind == "union":
        return _unordered(p.items, r.items, ctx)
    if p.kind == "matrix" and r.kind == "matrix":
        return len(p.items) == len(r.items) and all(
            nodes_equal(a, b, ctx) for a, b in zip(p.items, r.items)
        )
    if {p.kind, r.kind} == {"matrix", "seq"}:  # column/row vector vs (a, b, c)
        mat, seq = (p, r) if p.kind == "matrix" else (r, p)
        if seq.text != "()":
            return False
        if len(mat.items) == 1:
            flat = mat.items[0].items
        elif all(len(row.items) == 1 for row in mat.items):
            flat = tuple(row.items[0] for row in mat.items)
        else:
            return False
        return _ordered(flat, seq.items, ctx)
    return False


def _named_values(n: Node) -> dict[str, Node] | None:
    """{name: value} of a list of `name = value` items with distinct names, else None."""
    if n.kind != "list":
        return None
    out: dict[str, Node] = {}
    for item in n.items:
        if item.kind != "rel" or item.text != "=" or drop_lhs(item) is item:
            return None
        out[compact(item.items[0].text)] = drop_lhs(item)
    return out if len(out) == len(n.items) > 1 else None


def _as_union(n: Node) -> Node:
    """A list whose items are all intervals (`x < 2, x > 3`) as their union; else unchanged."""
    items = tuple(as_interval(i) for i in n.items)
    if all(i.kind == "seq" and i.interval for i in items):
        return Node("union", "", items)
    return n


def _ordered(a: tuple, b: tuple, ctx: _Ctx) -> bool:
    return len(a) == len(b) and all(nodes_equal(x, y, ctx) for x, y in zip(a, b))


def _unordered(a: tuple, b: tuple, ctx: _Ctx) -> bool:
    """Set equality (a repeated element does not matter): every element on each side has an
    equal partner on the other. Equal answer keys match without comparing; the quadratic
    search stops at the deadline."""
    keys_a, keys_b = [_node_key(x) for x in a], [_node_key(y) for y in b]

    def covered(xs: tuple, kxs: list[str], ys: tuple, kys: set[str]) -> bool:
        for x, k in zip(xs, kxs):
            if k in kys:
                continue
            if time.monotonic() > ctx.deadline:
                ctx.timed_out = True
                return False
            if not any(nodes_equal(x, y, ctx) for y in ys):
                return False
        return True

    return covered(a, keys_a, b, set(keys_b)) and covered(b, keys_b, a, set(keys_a))


def _relations_equal(p: Node, r: Node, ctx: _Ctx) -> bool:
    flip = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le", "=": "=", "\\ne": "\\ne"}
    (pl, pr), (rl, rr) = p.items, r.items

    def same(a: Node, b: Node) -> bool:
        return nodes_equal(parse_structure(a.text), parse_structure(b.text), ctx)

    if p.text == r.text and compact(pl.text) == compact(rl.text):
        return same(pr, rr)  # same left side (F_n = ...): the right sides decide
    if p.text == r.text and same(pl, rl) and same(pr, rr):
        return True
    if flip[p.text] == r.text and same(pl, rr) and same(pr, rl):
        return True
    if p.text == r.text == "=":  # same equation rearranged: y = 2x+1 vs 2x - y + 1 = 0
        fast = fast_relation_equal((pl.text, pr.text), (rl.text, rr.text))
        if fast is not None:
            return fast
        reply = _sympy({"op": "rel", "a": [pl.text, pr.text], "b": [rl.text, rr.text]}, ctx)
        return bool(reply.get("eq"))
    return False


# ---------------------------------------------------------------- atoms

_FUNC_WORDS = set(  # words in maths answers that are not text answers
    """
    Im Re alpha angle arccos arcsin arctan arg array bar begin beta binom bmatrix boxed cap
    cdot cdots ceil chi choose circ cos cosh cot csc cup deg delta det dfrac div dots dx dy
    emptyset end epsilon eta exp floor frac gamma gcd ge hat in inf infinity infty int
    kappa lambda lceil lcm ldots le lfloor lg lim ln log mathbb mathbf mathrm matrix max
    min mod mu ne notin nu omega operatorname overline phi pi pmatrix pmod prime prod psi
    quad rceil rfloor rho sec setminus sgn sigma sin sinh sqrt sum tan tanh tau tfrac theta
    tilde times to triangle varepsilon varnothing varphi vec xi zeta
    """.split()
)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_CHOICE = re.compile(r"\(?([A-E])\)?")
_CHOICE_PRED = re.compile(
    r"\(?([A-Ea-e])\)(?:[\s,.;:].*)?|([A-E])(?:[.:),;]?(?:\s.*)?)?", re.DOTALL
)


def _is_text(s: str) -> bool:
    return any(w.lower() not in _FUNC_WORDS for w in _WORD.findall(s))


def _text_key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _inf_key(s: str) -> str | None:
    t = compact(s).replace("+\\infty", "\\infty")
    return t if t in ("\\infty", "-\\infty") else None


def _base_literal(s: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"([0-9A-Za-z]+)_\{?(\d+)\}?", compact(s))
    if not m:
        return None
    try:
        base = int(m.group(2))
        return (int(m.group(1), base), base) if 2 <= base <= 36 else None
    except ValueError:
        return None


_SUM = re.compile(r"\\sum_\{?([a-zA-Z])=([^{}]+?)\}?\^\{([^{}]+)\}(.+)")


def _sum_parts(s: str) -> tuple[str, str, str, str] | None:
    m = _SUM.fullmatch(compact(s))
    return (m.group(1), m.group(2), m.group(3), m.group(4)) if m else None


def too_complex(s: str) -> bool:
    """Inputs sympy could blow up on (huge powers, towers, factorials, deep nesting)."""
    if len(s) > MAX_SYMPY_CHARS:
        return True
    depth = best = 0
    for c in s:
        depth += (c in "({[") - (c in ")}]")
        best = max(best, depth)
    if best > 12:
        return True
    if re.search(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\^\s*\{[^{}]*\{[^{}]*\^", s):  # power towers
        return True
    if re.search(r"\^\s*\{?\s*-?\s*\d{5,}", s) or re.search(r"\d{60,}", s):
        return True
    if re.search(r"(?:\d{3,}|[})a-zA-Z])\s*!", s) or "!!" in s:
        return True
    return False


def numbers_equal(p: Number, r: Number) -> bool:
    """Exact comparison under the rounding rules of `tolerance.py`; a percent sign on one side
    only also matches the value times 100 (`50\\%` is `0.5` and `50`, as MATH grades it)."""
    cands_p = [p.value] + ([p.value * 100] if p.percent and not r.percent else [])
    cands_r = [r.value] + ([r.value * 100] if r.percent and not p.percent else [])
    return any(rounded_equal(a, p.decimals, b, r.decimals) for a in cands_p for b in cands_r)


def atoms_equal(p: str, r: str, ctx: _Ctx) -> bool:
    """Two single expressions (no top-level structure)."""
    if compact(p) == compact(r):
        return True
    np_, nr = parse_number(p), parse_number(r)
    if np_ is not None and nr is not None:
        return numbers_equal(np_, nr)
    if _is_text(p) or _is_text(r):
        return _text_key(p) == _text_key(r) and bool(_text_key(p))
    if "\\infty" in p or "\\infty" in r:  # only -inf, inf (written either way) equal themselves
        return _inf_key(p) == _inf_key(r) and _inf_key(p) is not None
    bp, br = _base_literal(p), _base_literal(r)
    if bp is not None or br is not None:  # 204_5: compare values when both are base-b numerals
        return bp is not None and bp == br
    sums = _sum_parts(p), _sum_parts(r)
    if sums[0] and sums[1]:  # same index, same bounds, equal summands
        (i1, lo1, hi1, body1), (i2, lo2, hi2, body2) = sums
        if i1 != i2:
            return False
        return (
            atoms_equal(lo1, lo2, ctx)
            and atoms_equal(hi1, hi2, ctx)
            and atoms_equal(body1, body2, ctx)
        )
    if too_complex(p) or too_complex(r):
        ctx.refused = True
        return False
    p_dec = np_.decimals if np_ is not None else None
    r_dec = nr.decimals if nr is not None else None
    # a bare variable vs a number (or two different bare variables) cannot be equal
    if (np_ is not None and re.fullmatch(r"[a-zA-Z]", r)) or (
        nr is not None and re.fullmatch(r"[a-zA-Z]", p)
    ):
        return False
    if np_ is not None and np_.percent:  # 75\% vs 36\pi: compare the value 3/4
        p, p_dec = format_fraction(np_.value), None
    if nr is not None and nr.percent:
        r, r_dec = format_fraction(nr.value), None
    fast = fast_equal(p, r, p_dec, r_dec)
    if fast is not None:
        return fast
    reply = _sympy({"op": "eq", "a": p, "b": r, "a_dec": p_dec, "b_dec": r_dec}, ctx)
    return bool(reply.get("eq"))


_CACHE: dict[str, dict] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 50_000


def _sympy(req: dict, ctx: _Ctx) -> dict:
    """Ask the worker; cached; timeouts and crashes become {} (not equal), flagged on `ctx`."""
    import json

    from aimo3_recipe.grader.worker_pool import WorkerTimeout, get_pool

    key = json.dumps(req, sort_keys=True)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    left = ctx.deadline - time.monotonic()
    if left <= 0:
        ctx.timed_out = True
        return {}
    try:
        reply = get_pool().call(req, left)
    except WorkerTimeout:
        ctx.timed_out = True
        return {}
    except Exception:
        ctx.worker_error = True
        return {}
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = reply
    return reply


# ---------------------------------------------------------------- entry points


def compare(pred: str, ref: str, timeout: float = 2.0,
            problem: str | None = None) -> tuple[bool, str]:
    """(equal, status) for a raw predicted answer and a raw reference answer; status is one of
    STATUSES (see the module docstring). `problem` (optional) decides whether bare lists are
    ordered and whether `(2, 3)` is an interval (docs/verifier.md)."""
    ctx = _Ctx(timeout, problem)
    if len(pred) > MAX_ANSWER_CHARS or len(ref) > MAX_ANSWER_CHARS:
        equal = compact(pred) == compact(ref)
        return equal, "ok" if equal else "too_complex"
    p, r = clean_latex(pred), clean_latex(ref)
    if not p or not r:
        return False, "ok"
    if compact(p) == compact(r):
        return True, "ok"
    mr = _CHOICE.fullmatch(r)
    if mr:
        return _choice_letter(p) == mr.group(1), "ok"
    p_mod = _modulus_equal(p, r)
    if p_mod is None:
        return False, "ok"  # different residues
    p, r = p_mod
    p, r = _single_number_readings(p, r), _single_number_readings(r, p)
    if compact(p) == compact(r):
        return True, "ok"
    try:
        ok = nodes_equal(parse_structure(p), parse_structure(r), ctx)
    except RecursionError:
        ok, ctx.refused = False, True
    return ok, ctx.status(ok)


def _choice_letter(p: str) -> str | None:
    """The option a prediction names: `(C)`, `C`, `C) 12`, `A. Because B is not valid` (a
    later letter in prose is no second answer), None for a hedge (`(C) or (D)`, `B, C`)."""
    mp = _CHOICE_PRED.fullmatch(p)
    if not mp:
        return None
    group = 1 if mp.group(1) else 2
    letter = mp.group(group).upper()
    if re.match(r"\)?\s*(?:,|/|&|\bor\b|\band\b)\s*\(?[A-Ea-e]\)?(?![A-Za-z])",
                p[mp.end(group) :]):
        return None  # "(C) or (D)": a hedge is no answer
    return letter


def _modulus_equal(p: str, r: str) -> tuple[str, str] | None:
    """Answers carrying a modulus (`42 \\pmod{1000}`, `42 (mod 1000)`): with the same modulus
    on both sides, or a residue 0 <= r < m as the reference, both become the residue of the
    prediction; None when the residues differ."""
    (pb, pm), (rb, rm) = split_modulus(p), split_modulus(r)
    if pm is None and rm is None:
        return p, r
    m = pm or rm
    if pm is not None and rm is not None and pm != rm:
        return p, r  # different moduli: compare as written
    pn, rn = parse_number(pb), parse_number(rb)
    if pn is None or rn is None or pn.value.denominator != 1 or rn.value.denominator != 1:
        return pb if pm else p, rb if rm else r
    if rm is None and not 0 <= rn.value < m:
        return p, r  # the reference is not a residue mod m
    if int(pn.value) % m != int(rn.value) % m:
        return None
    return str(int(rn.value) % m), str(int(rn.value) % m)


_AND_MIXED = re.compile(r"(-?\d+)\s+and\s+(\d+\s*/\s*\d+|\\frac\{\d+\}\{\d+\})")


def _single_number_readings(s: str, other: str) -> str:
    """Readings of `s` that only make sense when the other side is one number: a decimal
    comma (`2,74` vs `2.74`) and a mixed number joined by "and" (`4 and 4/9` vs `40/9`).
    Against a list the comma and the "and" separate answers."""
    if parse_number(other) is None:
        return s
    dotted = decimal_comma(s)
    if dotted is not None:
        return dotted
    m = _AND_MIXED.fullmatch(s)
    if m:
        return f"{m.group(1)} {m.group(2)}"
    return s


def answer_key(answer: str | None) -> str | None:
    """Canonical string for grouping answers in majority voting (equal keys => equal answers).
    Cheap: string cleaning and exact rational arithmetic only."""
    if answer is None:
        return None
    s = clean_latex(answer)
    if not s:
        return None
    node = parse_structure(s) if len(s) <= MAX_ANSWER_CHARS else Node("atom", s)
    node = drop_lhs(node)
    return _node_key(node)


def _node_key(n: Node) -> str:
    if n.kind == "atom":
        num = parse_number(n.text)
        if num is not None:
            v = num.value * 100 if num.percent else num.value
            return format_fraction(v)
        return compact(n.text)
    inner = [_node_key(i) for i in n.items]
    if n.kind in ("set", "list", "union"):
        inner.sort()
        return {"set": "{%s}", "list": "%s", "union": "U(%s)"}[n.kind] % ",".join(inner)
    if n.kind == "seq":
        return n.text[0] + ",".join(inner) + n.text[1]
    if n.kind == "rel":
        return n.text.join(inner)
    return "[" + ";".join(inner) + "]"
