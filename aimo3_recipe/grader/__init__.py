"""aimo3_recipe.grader: final-answer extraction and equivalence, the bottom of the package.

Every evaluation number and every RL reward passes through here. It imports nothing from the
rest of the package except `utils` (the import-graph test checks this), so inference,
evaluation, training and RL can all depend on it.

    from aimo3_recipe.grader import verify, Verdict, grade, GradeResult, extract_answer
    verify("\\\\dfrac{1}{2}", "0.5")   # Verdict(correct=True, status='ok')

Modules, one concept each: `extraction` (which part of a completion is the answer),
`normalize` (LaTeX cleaning, exact rationals), `structure` (tuples, sets, intervals, ...),
`equivalence` (the comparison), `tolerance` (rounding and numeric tolerance, once),
`fast_eval` (mpmath), `symbolic` + `worker_pool` (sympy in killable subprocesses), `aimo`
(the integer 0..99999 policy), `grading` (the entry points: verify, grade). Rules: docs/verifier.md.
"""

from aimo3_recipe.grader.aimo import modulus_from_problem
from aimo3_recipe.grader.equivalence import STATUSES, answer_key
from aimo3_recipe.grader.extraction import extract_answer
from aimo3_recipe.grader.grading import (
    GradeResult,
    Verdict,
    grade,
    verify,
    verify_answer,
    verify_batch,
    warm_up,
)

__all__ = [
    "STATUSES",
    "GradeResult",
    "Verdict",
    "answer_key",
    "extract_answer",
    "grade",
    "modulus_from_problem",
    "verify",
    "verify_answer",
    "verify_batch",
    "warm_up",
]
