"""Final-answer extraction and verification: the grader behind every reward and eval number.

Public API (import from here):
- `extract_answer(completion)`: the last `\\boxed{}`/`\\fbox{}` (nested braces; a later box
  replaces an earlier one, also across `<think>`), else "The answer is ...", "**Answer:** ...",
  GSM8K `#### N`, else the last inline maths span or number. A completion whose last box is
  unclosed (cut at the token limit) has no answer.
- `verify_answer(predicted, reference, timeout=2.0, aimo=False, problem=None)`: equivalence
  (see `verifier.py` for the rules); AIMO mode accepts only integers 0..99999 and reduces the
  prediction mod m when the problem asks for a remainder modulo m.
- `verify_batch`, `answer_key` (majority-vote grouping), `grade` -> `GradeResult`,
  `verifier_stats()` (timeouts are counted there, never raised).

Thread-, asyncio- and process-safe: the only slow part (sympy) runs in killable worker
subprocesses (`worker_pool.py`), never under `signal.alarm`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aimo3_recipe.evaluation.normalize import clean_latex, parse_number
from aimo3_recipe.evaluation.verifier import answer_key, compare, verifier_stats
from aimo3_recipe.utils.math_utils import brace_ends

__all__ = [
    "GradeResult",
    "answer_key",
    "extract_answer",
    "grade",
    "modulus_from_problem",
    "verifier_stats",
    "verify_answer",
    "verify_batch",
    "warm_up",
]

# ---------------------------------------------------------------- extraction

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")


def _boxes(text: str) -> list[tuple[int, int, int, int]]:
    """(start, end, content start, content end) of every box, in order; content start -1 when
    the box is unclosed. Linear time: contents are sliced only by the caller that needs them."""
    out: list[tuple[int, int, int, int]] = []
    ends: dict[int, int] | None = None
    for m in _BOX_START.finditer(text):
        if m.group(1) is None:  # `\boxed 5`
            tail = re.match(r"\s*([^\s$]+)", text[m.end() : m.end() + 200])
            if tail:
                out.append((m.start(), m.end() + tail.end(), m.end() + tail.start(1), m.end() + tail.end()))
            else:
                out.append((m.start(), m.end(), -1, -1))
            continue
        if ends is None:
            ends = brace_ends(text)
        end = ends.get(m.end())
        if end is None:
            out.append((m.start(), len(text), -1, -1))
        else:
            out.append((m.start(), end, m.end(), end - 1))
    return out


# what may stand between boxes that together form one answer: `\boxed{1}, \boxed{2}`,
# `\boxed{1} and \boxed{2}`, `\boxed{x=1} \quad \text{and} \quad \boxed{y=2}`
_JOIN_GAP = re.compile(
    r"(?:\s|\$|\\[()\[\]]|\\quad|\\qquad|\\[,;: ]|,|;|\band\b|\bor\b|\\text\{\s*(?:and|or|,)?\s*\}|~"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"  # `x_1 = \boxed{1} and x_2 = \boxed{2}`
)


def _last_box(text: str) -> tuple[bool, str | None]:
    """(a box was found, the final answer in the last box(es), None when the last box is
    unclosed or empty). Boxes separated only by commas/"and" are one answer: `1, 2`."""
    boxes = _boxes(text)
    if not boxes:
        return False, None
    start, _, c0, c1 = boxes[-1]
    content = text[c0:c1].strip() if c0 >= 0 else ""
    if not content:
        return True, None
    parts = [content]
    for prev_start, prev_end, p0, p1 in reversed(boxes[:-1]):
        gap = text[prev_end:start]
        if p0 < 0 or prev_end > start or "\n\n" in gap or not _JOIN_GAP.fullmatch(gap):
            break
        prev = text[p0:p1].strip()
        if not prev:
            break
        if prev != parts[-1]:  # a repeated box is one answer
            parts.append(prev)
        start = prev_start
    return True, ", ".join(reversed(parts))


_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer\s*(?:is|:)|the\s+answer\s+is|\banswer\s*(?:\*\*)?\s*:|\*\*answer\*\*\s*:?)\s*(?:\*\*)?\s*:?\s*",
    re.IGNORECASE,
)
_GSM = re.compile(r"####\s*([^\n]+)")
_MATH_SPAN = re.compile(
    r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\\$|[^$\n])+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL
)
_NUMBER = re.compile(r"(?<![A-Za-z\d.])-?\d(?:\d|,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?(?!\d)")


def _after_phrase(rest: str) -> str | None:
    rest = rest.split("\n", 1)[0].strip().strip("*").strip()
    if not rest:
        return None
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(a):
            end = rest.find(b, len(a))
            if end > 0:
                return rest[len(a) : end].strip() or None
    m = re.match(r"(.+?)(?:\.\s|\.$|$)", rest)
    ans = (m.group(1) if m else rest).strip().rstrip(".").strip("*").strip()
    return ans or None


def extract_answer(completion: str) -> str | None:
    """The final answer of a model completion, or None (see module docstring for the order)."""
    if not completion:
        return None
    found, content = _last_box(completion)
    if found:
        return content
    tail = completion.rsplit("</think>", 1)[-1]
    if not tail.strip():
        tail = completion
    phrases = list(_ANSWER_PHRASE.finditer(tail))
    if phrases:
        ans = _after_phrase(tail[phrases[-1].end() :])
        if ans and re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}\s+[a-zA-Z]{2,}", ans):
            # "The final answer is: the largest $n$ is 34" -> look inside the sentence
            ans = _math_or_number(ans) or ans
        if ans:
            return ans
    gsm = _GSM.findall(tail)
    if gsm:
        return gsm[-1].strip().rstrip(".") or None
    return _math_or_number(tail)


def _math_or_number(tail: str) -> str | None:
    """The last inline maths span, or the last number if one comes after it."""
    nums = list(_NUMBER.finditer(tail))
    maths = list(_MATH_SPAN.finditer(tail))
    if maths and not (nums and nums[-1].start() >= maths[-1].end()):
        span = next(g for g in maths[-1].groups() if g is not None).strip()
        if span:
            return span
    if nums:
        return nums[-1].group().replace(" ", "").rstrip(",")
    return None


# ---------------------------------------------------------------- AIMO mode

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


def _aimo_equal(predicted: str, reference: str, problem: str | None) -> bool:
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
    return 0 <= value <= 99999 and value == int(ref.value)


# ---------------------------------------------------------------- verification


def verify_answer(
    predicted: str | None,
    reference: str,
    *,
    timeout: float = 2.0,
    aimo: bool = False,
    problem: str | None = None,
) -> bool:
    """Whether a predicted final answer equals the reference. Never raises, never exceeds
    `timeout` seconds of symbolic work (a timeout counts in `verifier_stats()` and is False)."""
    return _verify(predicted, reference, timeout=timeout, aimo=aimo, problem=problem)[0]


def _verify(
    predicted: str | None,
    reference: str,
    *,
    timeout: float = 2.0,
    aimo: bool = False,
    problem: str | None = None,
) -> tuple[bool, bool]:
    if predicted is None or reference is None:
        return False, False
    predicted, reference = str(predicted), str(reference)
    try:
        if aimo:
            return _aimo_equal(predicted, reference, problem), False
        return compare(predicted, reference, timeout)
    except Exception:  # a grader bug must not kill an RL run; counted, and the verdict is False
        from aimo3_recipe.evaluation.verifier import STATS

        STATS.add("errors")
        return False, False


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
    timed_out: bool  # the symbolic comparison hit its time limit (then correct is False)


def grade(completion: str, reference: str, **kw) -> GradeResult:
    """Extract the answer of a completion and verify it (keywords as in `verify_answer`)."""
    found, content = _last_box(completion or "")
    extracted = extract_answer(completion or "")
    correct, timed_out = _verify(extracted, reference, **kw)
    return GradeResult(extracted, correct, found and content is not None, timed_out)


def warm_up(workers: int = 1) -> None:
    """Start sympy worker processes now (about 1 s each) instead of at the first hard case."""
    from aimo3_recipe.evaluation.worker_pool import get_pool

    get_pool().warm(workers)
