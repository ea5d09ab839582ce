"""The grader's numeric tolerance and rounding policy, written once.

Three paths compare numbers: exact rational arithmetic (`equivalence.numbers_equal`), our
mpmath evaluator (`fast_eval`) and sympy in a worker (`symbolic`). They use different number
types but must agree on when two values are "the same answer", so the rules live here and the
three paths only apply them:

- exact values are equal when they are equal;
- a decimal literal is a rounded value. The reference may be a rounded decimal of the
  prediction when it has >= 2 places (`3.14159` vs ref `3.14`: equal; `0.33` as the reference
  of `1/3`: equal), and the prediction may be the exact value rounded when it has >= 3 places
  and the reference is exact and not an integer (`0.333` vs `1/3`: equal; `0.33` vs `1/3`,
  `3.14` vs `\\pi`, `2.999` vs `3`: not equal). "Rounded to d places" means within half a unit
  of the d-th place, inclusive;
- evaluated constants (`2\\sqrt3` vs `\\sqrt{12}`) are equal when they agree to 40 significant
  digits at 60-digit working precision, and certainly different beyond 1e-8 relative;
  expressions with variables must agree to 1e-20 relative at every usable test point.

A false positive is worse than a false negative (it rewards a wrong answer), hence the
minimum number of places before a decimal counts as rounded.
"""

from __future__ import annotations

from fractions import Fraction

REF_ROUNDED_MIN_DECIMALS = 2  # a reference decimal with >= 2 places may be a rounded value
PRED_ROUNDED_MIN_DECIMALS = 3  # a predicted decimal with >= 3 places may be the exact value rounded
NUMERIC_SLACK = Fraction(1, 10**9)  # relative slack on half a unit for floating-point evaluation

WORKING_DIGITS = 60  # precision of numeric evaluation (mpmath dps, sympy N digits)
EQUAL_REL_TOL = "1e-40"  # constants that agree to 40 significant digits are equal
DIFFERENT_REL_TOL = "1e-8"  # constants that differ by more than this are different
POINT_EQUAL_REL_TOL = "1e-20"  # expressions with variables: agreement at each test point
# fixed test points for expressions with variables (variable j is shifted by j * 0.0131)
TEST_POINTS = ("0.7316829", "1.3913517", "-0.5527731", "2.2360679", "-1.7019431", "0.3183098")


def rounding_rule(
    pred_decimals: int | None, ref_decimals: int | None, *, ref_is_integer: bool = False
) -> tuple[str, int] | None:
    """Which side may be a rounded value of the other, and to how many places:
    ("ref", d) when the reference is a d-place rounding of the prediction, ("pred", d) when
    the prediction is the exact reference rounded to d places, None when no rounding applies
    (then only exact equality counts). `*_decimals`: places of that side's decimal literal,
    None when it is not one."""
    if (
        ref_decimals is not None
        and ref_decimals >= REF_ROUNDED_MIN_DECIMALS
        and (pred_decimals is None or pred_decimals > ref_decimals)
    ):
        return "ref", ref_decimals
    if (
        pred_decimals is not None
        and pred_decimals >= PRED_ROUNDED_MIN_DECIMALS
        and ref_decimals is None
        and not ref_is_integer
    ):
        return "pred", pred_decimals
    return None


def half_unit(decimals: int, *, numeric: bool = False) -> Fraction:
    """The largest distance from an exact value to its `decimals`-place rounding (inclusive);
    `numeric`: widened by NUMERIC_SLACK for values computed in floating point."""
    half = Fraction(1, 2 * 10**decimals)
    return half * (1 + NUMERIC_SLACK) if numeric else half


def rounded_equal(pred: Fraction, pred_decimals: int | None, ref: Fraction,
                  ref_decimals: int | None) -> bool:
    """Exact values under the rounding rule (the exact path; the numeric paths call
    `rounding_rule` and `half_unit` on their own number types)."""
    if pred == ref:
        return True
    rule = rounding_rule(pred_decimals, ref_decimals, ref_is_integer=ref.denominator == 1)
    return rule is not None and abs(pred - ref) <= half_unit(rule[1])
