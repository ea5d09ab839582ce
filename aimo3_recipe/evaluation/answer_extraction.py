"""The seed's grader names, kept importable from here: the grader lives in
`aimo3_recipe.grader` (see that package and docs/verifier.md)."""

from aimo3_recipe.grader import (
    STATUSES,
    GradeResult,
    Verdict,
    answer_key,
    extract_answer,
    grade,
    modulus_from_problem,
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
