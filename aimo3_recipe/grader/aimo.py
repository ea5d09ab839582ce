"""The AIMO answer policy: every answer is an integer 0..99999, and a problem that wants a
remainder says so.

`modulus_from_problem(problem)` reads the modulus from the question ("remainder when ... divided
by 1000", "modulo 7", "\\pmod{m}"); `aimo_equal` accepts a prediction only when it is an
integer (also written `x = 42`) whose value, reduced mod m when the problem asks for a
remainder, is in 0..99999 and equals the reference. Pure string and integer work, no sympy.
"""

from __future__ import annotations

import re

from aimo3_recipe.grader.normalize import clean_latex, parse_number

__all__ = ["aimo_equal", "modulus_from_problem", "AIMO_MAX"]

AIMO_MAX = 99999  # the largest answer the competition accepts

_MOD_PATTERNS = [
    re.compile(
        r"remainder\s+when\b.{0,300}?\bdivided\s+by\s*\$?\s*([^$\s.,?]+(?:\s*\^\s*\{?\s*\d+\s*\}?)?)",
        re.IGNORECASE | re.DOTALL,
    ),
    re.compile(r"\bmodulo\s*\$?\s*([^$\s.,?]+(?:\s*\^\s*\{?\s*\d+\s*\}?)?)", re.IGNORECASE),
    re.compile(r"\\pmod\s*\{\s*([^{}]+)\}"),
    re.compile(r"\bmod\s*\$?\s*(\d[^$\s.,?]*)", re.IGNORECASE),
]


def modulus_from_problem(problem: str) -> int | None:
    """m when the problem asks for a remainder modulo m ("remainder when ... divided by m",
    "modulo m", "\\pmod{m}"), else None. Only the question (the last two sentences) is read:
    "residues modulo 7" in the set-up does not make the answer a remainder."""
    sentences = [x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z$\\])", problem.strip()) if x.strip()]
    question = " ".join(sentences[-2:])
    for pat in _MOD_PATTERNS:
        for m in pat.finditer(question):
            num = parse_number(clean_latex(m.group(1)))
            if num is not None and num.value.denominator == 1 and num.value > 1:
                return int(num.value)
    return None


def aimo_equal(predicted: str, reference: str, problem: str | None) -> bool:
    """Whether an AIMO prediction is the reference integer (see the module docstring)."""
    pred = clean_latex(predicted)
    if re.fullmatch(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*[^=]+", pred):  # x = 42
        pred = pred.split("=", 1)[1].strip()
    num = parse_number(pred)
    ref = parse_number(clean_latex(reference))
    if num is None or ref is None or num.value.denominator != 1 or ref.value.denominator != 1:
        return False
    value = int(num.value)
    mod = modulus_from_problem(problem) if problem else None
    if mod is not None:
        value %= mod
    return 0 <= value <= AIMO_MAX and value == int(ref.value)
