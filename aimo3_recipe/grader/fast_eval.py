"""Numeric equality of LaTeX expressions without sympy: a small strict parser + mpmath.

Why: parsing LaTeX with latex2sympy2_extended (ANTLR) costs 30-300 ms per expression, more
than everything else in the verifier together. Most answers that are not plain rationals are
short expressions (`2\\sqrt3`, `\\frac{\\pi}{4}`, `x^2+2x+1`, `\\sin^2 x`); this module parses
those itself and compares them by evaluation at 60 digits (constants) or at fixed random
points (expressions with variables).

It only decides when the evidence is overwhelming (tolerances and rounding rules:
`tolerance.py`): equal to 40 digits (constants) or at every test point, or different by more
than 1e-8. Anything it does not fully understand
(ambiguous notation such as `\\sin 2x`, `x^23`, `i`, sums, integrals), and anything in
between, returns None and goes to the sympy worker. Sizes are capped, so it cannot hang.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from mpmath.ctx_mp import MPContext

from aimo3_recipe.grader.tolerance import (
    DIFFERENT_REL_TOL,
    EQUAL_REL_TOL,
    POINT_EQUAL_REL_TOL,
    TEST_POINTS,
    WORKING_DIGITS,
    half_unit,
    rounding_rule,
)

_LOCAL = threading.local()


def _ctx() -> MPContext:
    """A private mpmath context per thread (mpmath.mp's precision is global, not thread-safe)."""
    c = getattr(_LOCAL, "ctx", None)
    if c is None:
        c = MPContext()
        c.dps = WORKING_DIGITS
        _LOCAL.ctx = c
    return c



class Unsupported(Exception):
    """Notation this parser does not handle: the caller falls back to sympy."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+)|(?P<var>[a-zA-Z])|(?P<op>[-+*/^()\[\]{}!|_]))"
)
_FUNCS = {  # LaTeX command -> mpmath context method
    "\\sin": "sin",
    "\\cos": "cos",
    "\\tan": "tan",
    "\\sec": "sec",
    "\\csc": "csc",
    "\\cot": "cot",
    "\\ln": "ln",
    "\\exp": "exp",
    "\\arcsin": "asin",
    "\\arccos": "acos",
    "\\arctan": "atan",
    "\\sinh": "sinh",
    "\\cosh": "cosh",
    "\\tanh": "tanh",
}
_GREEK = {
    "\\alpha",
    "\\beta",
    "\\gamma",
    "\\theta",
    "\\phi",
    "\\varphi",
    "\\omega",
    "\\lambda",
    "\\mu",
    "\\sigma",
    "\\tau",
    "\\rho",
    "\\delta",
    "\\epsilon",
    "\\psi",
    "\\xi",
    "\\eta",
}
Node = Callable[[MPContext, dict], object]  # (mpmath context, {variable: value}) -> value


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    s = s.replace("\\left", "").replace("\\right", "")
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if not s[pos:].strip():
                break
            raise Unsupported(s[pos:])
        out.append(m.group().strip())
        pos = m.end()
    if len(out) > 200:
        raise Unsupported("too long")
    return out


def _const(text: str) -> Node:
    return lambda c, env: c.mpf(text)


def _binop(op: str, a: Node, b: Node) -> Node:
    if op == "+":
        return lambda c, env: a(c, env) + b(c, env)
    if op == "-":
        return lambda c, env: a(c, env) - b(c, env)
    if op == "*":
        return lambda c, env: a(c, env) * b(c, env)
    return lambda c, env: a(c, env) / b(c, env)


def _power(base: Node, exp: Node) -> Node:
    def pw(c, env):
        e = exp(c, env)
        if abs(e) > 10_000:
            raise Unsupported("huge exponent")
        return c.power(base(c, env), e)

    return pw


def _factorial(node: Node) -> Node:
    def fact(c, env):
        v = node(c, env)
        if abs(v) > 1000:
            raise Unsupported("huge factorial")
        return c.factorial(v)

    return fact


def _root(n: Node, arg: Node) -> Node:
    def rt(c, env):
        k, x = n(c, env), arg(c, env)
        if x < 0 and int(k) % 2 == 1:
            return -c.root(-x, k)  # real odd root of a negative number
        return c.root(x, k)

    return rt


class _Parser:
    """expr := term (+|- term)*; term := unary ((*|/|\\cdot|\\times|\\div|implicit) unary)*;
    unary := (-|+) unary | power; power := postfix (^ exponent)?; postfix := primary !?"""

    def __init__(self, toks: list[str]):
        self.t, self.i = toks, 0
        self.vars: set[str] = set()
        # uses roots, logs, |.|, inverse trig or non-integer powers: values at negative points
        # may follow a different branch than the other side's spelling (x^{2/3} vs cbrt(x)^2)
        self.branchy = False

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Unsupported(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise Unsupported(f"trailing {self.peek()!r}")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = _binop(op, node, self.term())
        return node

    @staticmethod
    def _starts_primary(tok: str | None) -> bool:
        if tok is None:
            return False
        return (
            tok[0].isdigit()
            or tok[0] == "."
            or tok.isalpha()
            or tok in ("(", "{")
            or tok in ("\\frac", "\\sqrt", "\\pi", "\\log")
            or tok in _FUNCS
            or tok in _GREEK
        )

    def term(self) -> Node:
        node = self.unary()
        after_slash = False
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                node = _binop("*", node, self.unary())
                after_slash = False
            elif tok in ("/", "\\div"):
                self.take()
                node = _binop("/", node, self.unary())
                after_slash = True
            elif self._starts_primary(tok):
                if after_slash:
                    raise Unsupported("1/2x: (1/2)x or 1/(2x)?")
                prev = self.t[self.i - 1]
                if (tok[0].isdigit() or tok[0] == ".") and prev not in (")", "}"):
                    raise Unsupported("a number after a factor is ambiguous")
                node = _binop("*", node, self.power())
            else:
                return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok == "-":
            self.take()
            inner = self.unary()
            return lambda c, env: -inner(c, env)
        if tok == "+":
            self.take()
            return self.unary()
        return self.power()

    def exponent(self) -> Node:
        tok = self.peek()
        if tok == "{":
            return self.group("{", "}")
        if tok is not None and tok[0].isdigit():
            if len(tok) > 1:
                raise Unsupported("x^23 is ambiguous")
            self.take()
            return _const(tok)
        if tok is None or tok == "-":
            raise Unsupported("x^-1 is ambiguous")
        return self.postfix()

    def power(self) -> Node:
        base = self.postfix()
        if self.peek() == "^":
            self.take()
            start = self.i
            exp = self.exponent()
            toks = [t for t in self.t[start : self.i] if t not in ("{", "}", "-")]
            if not (len(toks) == 1 and toks[0].isdigit()):
                self.branchy = True  # x^{1/2}, x^{n}: not a plain integer literal
            if self.peek() == "^":
                raise Unsupported("power tower")
            return _power(base, exp)
        return base

    def postfix(self) -> Node:
        node = self.primary()
        if self.peek() == "!":
            self.take()
            return _factorial(node)
        return node

    def group(self, open_: str, close: str) -> Node:
        self.take(open_)
        node = self.expr()
        self.take(close)
        return node

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end")
        if tok[0].isdigit() or tok[0] == ".":
            self.take()
            if len(tok) > 40:
                raise Unsupported("long literal")
            return _const(tok)
        if tok in ("(", "{", "["):
            return self.group(tok, {"(": ")", "{": "}", "[": "]"}[tok])
        if tok == "|":
            self.branchy = True
            self.take()
            inner = self.expr()
            self.take("|")
            return lambda c, env: abs(inner(c, env))
        if tok == "\\frac":
            self.take()
            num = self.group("{", "}")
            den = self.group("{", "}")
            return _binop("/", num, den)
        if tok == "\\sqrt":
            self.branchy = True
            self.take()
            if self.peek() == "[":
                n = self.group("[", "]")
                return _root(n, self.group("{", "}"))
            arg = self.group("{", "}")
            return lambda c, env: c.sqrt(arg(c, env))
        if tok == "\\pi":
            self.take()
            return lambda c, env: +c.pi
        if tok in _FUNCS or tok == "\\log":
            return self.function()
        if (tok.isalpha() and len(tok) == 1) or tok in _GREEK:
            self.take()
            name = tok
            if self.peek() == "_":  # a_1, x_{12}
                self.take()
                sub = self.take()
                if sub == "{":
                    parts = []
                    while self.peek() not in ("}", None):
                        parts.append(self.take())
                    self.take("}")
                    sub = "".join(parts)
                name = f"{tok}_{sub}"
            if name == "i":  # the imaginary unit, as in latex2sympy for answers like 2 - 3i
                return lambda c, env: c.mpc(0, 1)
            if name == "e":
                return lambda c, env: +c.e
            self.vars.add(name)
            return lambda c, env: env[name]
        raise Unsupported(tok)

    def function(self) -> Node:
        tok = self.take()
        if tok in ("\\ln", "\\log", "\\arcsin", "\\arccos", "\\arctan"):
            self.branchy = True
        base: Node | None = None
        if tok == "\\log":
            if self.peek() != "_":
                raise Unsupported("log without base (ln or log10?)")
            self.take("_")
            base = self.group("{", "}") if self.peek() == "{" else self.primary()
        power = None
        if self.peek() == "^":  # \sin^2 x
            self.take()
            power = self.exponent()
        nxt = self.peek()
        if nxt in ("(", "{"):
            arg = self.group(nxt, ")" if nxt == "(" else "}")
        else:
            arg = self.power()
            nxt = self.peek()
            if self._starts_primary(nxt) and not (nxt in _FUNCS or nxt == "\\log"):
                raise Unsupported("\\sin 2x is ambiguous")
        if base is not None:
            b = base

            def call(c, env):
                return c.ln(arg(c, env)) / c.ln(b(c, env))
        else:
            method = _FUNCS[tok]

            def call(c, env):
                return getattr(c, method)(arg(c, env))

        if power is None:
            return call
        pw = power
        return lambda c, env: c.power(call(c, env), pw(c, env))


def compile_expr(s: str) -> tuple[Node, set[str]]:
    """(evaluator, variable names) of a LaTeX expression; raises Unsupported."""
    node, names, _ = _compile(s)
    return node, names


def _compile(s: str) -> tuple[Node, set[str], bool]:
    p = _Parser(_tokens(s))
    node = p.parse()
    return node, p.vars, p.branchy


def _value(node: Node, env: dict):
    c = _ctx()
    v = node(c, env)
    if not isinstance(v, (c.mpf, c.mpc)) or not c.isfinite(v):
        raise Unsupported("not finite")
    return v


def _is_real(v) -> bool:
    c = _ctx()
    return not isinstance(v, c.mpc) or v.imag == 0


def _rel(a, b):
    c = _ctx()
    return abs(a - b) / max(abs(a), abs(b), c.mpf(1))


def _rounds_to(exact, decimals: int, written) -> bool:
    """Whether the decimal literal `written` is `exact` rounded to `decimals` places."""
    c = _ctx()
    if isinstance(exact, c.mpc) and exact.imag != 0:
        return False
    half = half_unit(decimals, numeric=True)
    return abs(exact - written) <= c.mpf(half.numerator) / half.denominator


def _points(names: list[str]):
    c = _ctx()
    for k in range(len(TEST_POINTS)):
        yield {
            n: c.mpf(TEST_POINTS[(k + j) % len(TEST_POINTS)]) + j * c.mpf("0.0131")
            for j, n in enumerate(names)
        }


_ERRORS = (
    Unsupported,
    ZeroDivisionError,
    ValueError,
    OverflowError,
    TypeError,
    RecursionError,
    KeyError,
)


def fast_equal(a: str, b: str, a_dec: int | None = None, b_dec: int | None = None) -> bool | None:
    """True / False when certain, None when sympy must decide. `a` is the prediction; `*_dec`:
    decimal places when that side is a decimal literal (`tolerance.rounding_rule`)."""
    try:
        fa, va, ba = _compile(a)
        fb, vb, bb = _compile(b)
        c = _ctx()
        eq_tol, ne_tol = c.mpf(EQUAL_REL_TOL), c.mpf(DIFFERENT_REL_TOL)
        point_tol = c.mpf(POINT_EQUAL_REL_TOL)
        names = sorted(va | vb)
        if not names:
            x, y = _value(fa, {}), _value(fb, {})
            d = _rel(x, y)
            if d <= eq_tol:
                return True
            rule = rounding_rule(a_dec, b_dec)
            if rule is not None:
                side, places = rule
                return _rounds_to(x, places, y) if side == "ref" else _rounds_to(y, places, x)
            return False if d > ne_tol else None
        agree, branch_skips = 0, 0
        for env in _points(names):
            try:
                x, y = _value(fa, env), _value(fb, env)
            except (Unsupported, ZeroDivisionError, ValueError):
                continue
            d = _rel(x, y)
            if d > ne_tol:
                if not (ba or bb) or all(v > 0 for v in env.values()):
                    return False
                if _is_real(x) and _is_real(y):
                    return False  # both real and different: different functions (sqrt(x^2) vs x)
                # one side complex: a branch choice (x^{2/3} on the principal branch vs
                # cbrt(x)^2 real) at a negative point; decided where both are real
                branch_skips += 1
                continue
            if d > point_tol:
                return None
            agree += 1
        if agree >= 4 or (branch_skips and agree >= 3):
            return True
        return None
    except _ERRORS:
        return None


def fast_relation_equal(a: tuple[str, str], b: tuple[str, str]) -> bool | None:
    """`l1 = r1` vs `l2 = r2` as the same equation: (l1 - r1) / (l2 - r2) is one non-zero
    constant at every test point. None when unsure."""
    try:
        (la, lv), (ra, rv) = compile_expr(a[0]), compile_expr(a[1])
        (lb, lv2), (rb, rv2) = compile_expr(b[0]), compile_expr(b[1])
        names = sorted(lv | rv)
        if set(names) != (lv2 | rv2):
            return False if names and (lv2 | rv2) else None  # x = 3 vs y = 3
        if not names:
            return None
        c = _ctx()
        tiny = c.mpf("1e-20")
        ratios = []
        for env in _points(names):
            try:
                d1 = _value(la, env) - _value(ra, env)
                d2 = _value(lb, env) - _value(rb, env)
            except (Unsupported, ZeroDivisionError, ValueError):
                continue
            if abs(d2) < tiny or abs(d1) < tiny:
                return None
            ratios.append(d1 / d2)
        if len(ratios) < 3:
            return None
        spread = max(_rel(r, ratios[0]) for r in ratios)
        if spread <= c.mpf(POINT_EQUAL_REL_TOL):
            return True
        return False if spread > c.mpf(DIFFERENT_REL_TOL) else None
    except _ERRORS:
        return None
