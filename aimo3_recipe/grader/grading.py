"""The grader's entry points: `verify` (one verdict with its status), `grade` (extract, then
verify), and the boolean conveniences the seed names (`verify_answer`, `verify_batch`).

Every verdict carries a status, so nothing is counted in process-global state:
- "ok": the verdict is a real answer (equal, or really not equal);
- "timeout": the symbolic comparison hit `timeout` seconds (the verdict is False);
- "too_complex": the complexity guard refused an input sympy could blow up on (False);
- "error": the sympy worker crashed or could not start, or the grader itself raised (False).
A caller that sums statuses (the evaluation's results.json, RL's per-step log) sees every
unsure verdict; none is raised.

Thread-, asyncio- and process-safe: the only slow part (sympy) runs in killable worker
subprocesses (`worker_pool.py`), never under `signal.alarm`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimo3_recipe.grader.aimo import aimo_equal
from aimo3_recipe.grader.equivalence import STATUSES, compare
from aimo3_recipe.grader.extraction import extract_answer, last_box

__all__ = ["GradeResult", "STATUSES", "Verdict", "grade", "verify", "verify_answer",
           "verify_batch", "warm_up"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison."""

    correct: bool  # the prediction equals the reference
    status: str  # ok | timeout | too_complex | error (see the module docstring)


def verify(
    predicted: str | None,
    reference: str,
    *,
    timeout: float = 2.0,
    aimo: bool = False,
    problem: str | None = None,
) -> Verdict:
    """Whether a predicted final answer equals the reference, and how sure the grader is.
    Never raises, never spends more than `timeout` seconds of symbolic work. `aimo`: only
    integers 0..99999 count, reduced mod m when `problem` asks for a remainder mod m."""
    if predicted is None or reference is None:
        return Verdict(False, "ok")
    predicted, reference = str(predicted), str(reference)
    try:
        if aimo:
            return Verdict(aimo_equal(predicted, reference, problem), "ok")
        equal, status = compare(predicted, reference, timeout, problem)
        return Verdict(equal, status)
    except Exception:  # a grader bug must not kill an RL run: False, with status "error"
        return Verdict(False, "error")


def verify_answer(
    predicted: str | None,
    reference: str,
    *,
    timeout: float = 2.0,
    aimo: bool = False,
    problem: str | None = None,
) -> bool:
    """`verify(...).correct`: the boolean verdict (the reward function's `answer_verifier`)."""
    return verify(predicted, reference, timeout=timeout, aimo=aimo, problem=problem).correct


def verify_batch(predicted: list[str | None], references: list[str], **kw) -> list[bool]:
    """`verify_answer` over pairs (same keyword arguments); `problem` may be a list."""
    if len(predicted) != len(references):
        raise ValueError(
            f"verify_batch: {len(predicted)} predictions but {len(references)} references"
        )
    problems = kw.pop("problem", None)
    if not isinstance(problems, list):
        problems = [problems] * len(predicted)
    if len(problems) != len(predicted):
        raise ValueError(
            f"verify_batch: {len(problems)} problems for {len(predicted)} predictions; "
            "pass one problem text per prediction or a single string"
        )
    return [
        verify_answer(p, r, problem=q, **kw) for p, r, q in zip(predicted, references, problems)
    ]


@dataclass
class GradeResult:
    """The grade of one completion."""

    extracted: str | None  # the final answer found in the completion (None: no answer)
    correct: bool  # equal to the reference
    boxed: bool  # the completion has a closed \boxed{} (format reward)
    status: str = "ok"  # the verdict's status: ok | timeout | too_complex | error

    @property
    def timed_out(self) -> bool:
        """The symbolic comparison hit its time limit (then correct is False)."""
        return self.status == "timeout"


def grade(completion: str, reference: str, **kw) -> GradeResult:
    """Extract the answer of a completion and verify it (keywords as in `verify`)."""
    found, content = last_box(completion or "")
    extracted = extract_answer(completion or "")
    verdict = verify(extracted, reference, **kw)
    return GradeResult(extracted, verdict.correct, found and content is not None, verdict.status)


def warm_up(workers: int = 1) -> None:
    """Start sympy worker processes now (about 1 s each) instead of at the first hard case."""
    from aimo3_recipe.grader.worker_pool import get_pool

    get_pool().warm(workers)
