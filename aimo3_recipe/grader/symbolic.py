"""Symbolic equality of two single LaTeX expressions (sympy), run inside a worker process.

Only atoms reach this module: structure (tuples, sets, intervals, matrices, equations) is split
by `equivalence.py`, and rational numbers are decided there without sympy. Here we parse
with latex2sympy2_extended (the parser math-verify uses) and decide equality by high-precision
numeric evaluation (constants) or evaluation at random points (expressions with variables), with
a simplification fallback; tolerances and rounding rules are `tolerance.py`'s. Nothing here has a time limit: it runs in `worker_pool`'s
subprocess, which the caller kills when its deadline passes.
"""

from __future__ import annotations

import random
from typing import Any

import sympy
from sympy import Basic

from aimo3_recipe.grader.tolerance import (
    EQUAL_REL_TOL,
    POINT_EQUAL_REL_TOL,
    TEST_POINTS,
    WORKING_DIGITS,
    half_unit,
    rounding_rule,
)

_REL_TOL = sympy.Float(EQUAL_REL_TOL, WORKING_DIGITS)
_POINT_TOL = sympy.Float(POINT_EQUAL_REL_TOL, WORKING_DIGITS)


def parse_latex(s: str) -> Basic:
    """latex2sympy2_extended with real symbols; raises on anything it cannot read."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.math_normalization import NormalizationConfig

    cfg = NormalizationConfig(
        basic_latex=True,
        units=True,
        malformed_operators=True,
        nits=True,
        boxed="none",
        equations=False,
    )
    expr = latex2sympy(s, is_real=True, convert_degrees=False, normalization_config=cfg)
    if isinstance(expr, sympy.MatrixExpr):  # A + B, A B of explicit matrices
        expr = expr.doit()
        expr = expr.as_explicit() if isinstance(expr, sympy.MatrixExpr) else expr
    if not isinstance(expr, (sympy.Expr, sympy.MatrixBase)):
        raise ValueError(f"not a plain expression: {type(expr).__name__}")
    return expr


def _num(x: Basic) -> sympy.Expr | None:
    """A WORKING_DIGITS-digit complex value, or None if it is not a finite number."""
    try:
        v = sympy.N(x, WORKING_DIGITS)
    except Exception:
        return None
    if v.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or v.free_symbols:
        return None
    if not v.is_number:
        return None
    return v


def _close(a: sympy.Expr, b: sympy.Expr, tol: sympy.Expr = _REL_TOL) -> bool:
    diff = abs(sympy.N(a - b, WORKING_DIGITS))
    scale = max(abs(a), abs(b), sympy.Integer(1))
    return bool(diff <= tol * scale)


def _rounds_to(exact: sympy.Expr, decimals: int, written: sympy.Expr) -> bool:
    """Whether `exact` rounded to `decimals` places is the decimal literal `written`."""
    if not (exact.is_real and written.is_real):
        return False
    half = half_unit(decimals, numeric=True)
    bound = sympy.Rational(half.numerator, half.denominator)
    return bool(abs(sympy.N(exact - written, WORKING_DIGITS)) <= bound)


def expr_equal(a: Basic, b: Basic, a_dec: int | None = None, b_dec: int | None = None) -> bool:
    """Equality of two parsed expressions. `a_dec`/`b_dec`: decimal places when that side was a
    decimal literal (a rounded value): it then matches the other side rounded to that many places."""
    if a == b and not a.has(sympy.zoo, sympy.nan):
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)):
            return False
        if a.shape != b.shape:
            return False
        return all(expr_equal(x, y) for x, y in zip(a, b))
    syms = a.free_symbols | b.free_symbols
    if not syms:
        va, vb = _num(a), _num(b)
        if va is None or vb is None:
            return False
        if _close(va, vb):
            return True
        rule = rounding_rule(a_dec, b_dec)
        if rule is not None:
            side, places = rule
            return _rounds_to(va, places, vb) if side == "ref" else _rounds_to(vb, places, va)
        return False
    if a.free_symbols != b.free_symbols:
        return False
    return _random_points_equal(a, b, sorted(syms, key=str))


def _random_points_equal(a: Basic, b: Basic, syms: list) -> bool:
    rng = random.Random(1234)
    agree = 0
    for k in range(8):
        pt = {
            s: sympy.Float(float(TEST_POINTS[(k + j) % len(TEST_POINTS)]) + rng.random() * 0.01, 30)
            for j, s in enumerate(syms)
        }
        try:
            va, vb = _num(a.subs(pt)), _num(b.subs(pt))
        except Exception:
            continue
        if va is None or vb is None:
            if (va is None) != (vb is None):
                # defined on one side only: different functions (unless both undefined)
                return False
            continue
        if not _close(va, vb, _POINT_TOL):
            return False
        agree += 1
        if agree >= 4:
            return True
    if agree >= 2:
        return True
    try:
        return bool(sympy.simplify(a - b) == 0)
    except Exception:
        return False


def relation_equal(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """`l1 = r1` vs `l2 = r2`: same sides, or l1 - r1 proportional to l2 - r2 (same equation)."""
    l1, r1 = (parse_latex(x) for x in a)
    l2, r2 = (parse_latex(x) for x in b)
    if expr_equal(l1, l2) and expr_equal(r1, r2):
        return True
    d1, d2 = sympy.expand(l1 - r1), sympy.expand(l2 - r2)
    if d1 == 0 or d2 == 0:
        return False
    syms = d1.free_symbols | d2.free_symbols
    if not syms:
        return False
    ratio = sympy.simplify(d1 / d2)
    return bool(ratio.is_number and ratio != 0 and _num(ratio) is not None)


def handle(req: dict[str, Any]) -> dict[str, Any]:
    """One request from the parent process -> {"eq": bool} or {"error": str}."""
    try:
        if req["op"] == "eq":
            a, b = parse_latex(req["a"]), parse_latex(req["b"])
            return {"eq": expr_equal(a, b, req.get("a_dec"), req.get("b_dec"))}
        if req["op"] == "rel":
            return {"eq": relation_equal(tuple(req["a"]), tuple(req["b"]))}
        if req["op"] == "ping":
            return {"eq": True}
        if req["op"] == "sleep":  # for tests of the hard time limit
            import time

            time.sleep(float(req["seconds"]))
            return {"eq": True}
        return {"error": f"unknown op {req['op']!r}"}
    except Exception as e:  # a parse failure is an answer ("cannot tell"), not a crash
        return {"error": f"{type(e).__name__}: {e}"[:300]}
