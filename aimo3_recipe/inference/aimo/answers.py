"""AIMO answers: every answer is an integer 0..99999; a problem that wants a remainder says so.

`normalise_answer(raw, problem)` turns an extracted answer string into that integer, or says
why it cannot:
- "ok": an integer in range ("42", "042" -> 42, "12,345", "42.0", "x = 42", "\\frac{84}{2}");
- "reduced": the problem asks for a remainder modulo m (`grader.modulus_from_problem`) and
  the value was reduced mod m (only when it was not already in 0..m-1);
- "out_of_range": an integer outside 0..99999 and no modulus to reduce it by (the system
  prompt tells the model a larger result means the problem wants a remainder: it did not);
- "not_integer": a number that is not an integer (3/2, 0.5), or text that is no number;
- "none": nothing was extracted.
Only "ok" and "reduced" answers vote. When no attempt has one, the solver answers
`fallback_answer` and counts it. Pure string and integer work (the grader's number parser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aimo3_recipe.grader import modulus_from_problem
from aimo3_recipe.grader.aimo import AIMO_MAX
from aimo3_recipe.grader.normalize import clean_latex, parse_number

ANSWER_STATUSES = ("ok", "reduced", "out_of_range", "not_integer", "none")
VALID = ("ok", "reduced")


@dataclass(frozen=True)
class AIMOAnswer:
    value: int | None  # the integer answer in 0..AIMO_MAX (None unless status is valid)
    status: str  # one of ANSWER_STATUSES (module docstring)
    raw: str | None = None  # what was extracted from the completion

    @property
    def valid(self) -> bool:
        return self.status in VALID


_ASSIGN = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*([^=]+)")


def parse_integer(raw: str) -> tuple[int | None, str]:
    """(value, "ok") for an integer-valued answer, (None, "not_integer") otherwise."""
    text = clean_latex(raw).strip().rstrip(".")
    m = _ASSIGN.fullmatch(text)
    if m:  # x = 42
        text = m.group(1).strip()
    num = parse_number(text)
    if num is None or num.percent or num.value.denominator != 1:
        return None, "not_integer"
    return int(num.value), "ok"


def normalise_answer(raw: str | None, problem: str | None = None, *,
                     modulus: int | None = None) -> AIMOAnswer:
    """The AIMO integer of an extracted answer (module docstring). `modulus` overrides the
    one read from `problem`."""
    if raw is None or not str(raw).strip():
        return AIMOAnswer(None, "none", raw)
    value, status = parse_integer(str(raw))
    if value is None:
        return AIMOAnswer(None, status, raw)
    mod = modulus if modulus is not None else (modulus_from_problem(problem) if problem else None)
    if mod is not None and not 0 <= value < mod:
        return AIMOAnswer(value % mod if value % mod <= AIMO_MAX else None,
                          "reduced" if value % mod <= AIMO_MAX else "out_of_range", raw)
    if not 0 <= value <= AIMO_MAX:
        return AIMOAnswer(None, "out_of_range", raw)
    return AIMOAnswer(value, "ok", raw)
