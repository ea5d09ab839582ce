"""Final-answer extraction: which part of a model completion is its answer.

`extract_answer(completion)`: the last `\\boxed{}`/`\\fbox{}` (nested braces; a later box
replaces an earlier one, also across `<think>`; boxes joined by commas/"and", or one box per
labelled part "(a) ... (b) ...", form one answer), else "The answer is ...", "**Answer:** ...",
"The correct option is ...", GSM8K `#### N` / `####: N`, else the last inline maths span or
number (`42 (mod 1000)` keeps its modulus). A completion whose last box is unclosed (cut at
the token limit) has no answer. `last_box` also tells the format reward
whether a closed box exists. Linear time in the completion's length (tested on adversarial
inputs of 100k characters).
"""

from __future__ import annotations

import re

from aimo3_recipe.grader.normalize import decimal_comma
from aimo3_recipe.utils.math_utils import brace_ends

__all__ = ["extract_answer", "last_box"]

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


def last_box(text: str) -> tuple[bool, str | None]:
    """(a box was found, the final answer in the last box(es), None when the last box is
    unclosed or empty). Boxes separated only by commas/"and" are one answer: `1, 2`."""
    boxes = _boxes(text)
    if not boxes:
        return False, None
    start, _, c0, c1 = boxes[-1]
    content = text[c0:c1].strip() if c0 >= 0 else ""
    if not content:
        return True, None
    by_part = _part_answers(text, boxes)
    if by_part is not None:
        return True, by_part
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


# part labels of a multi-part answer: (a) (b) ..., (i) (ii) ..., Part 1, Part (b)
_PART = re.compile(
    r"(?:^|(?<=[\s*]))(?:\((?P<p>[a-f]|i{1,3}|iv|v|vi)\)|part\s*\(?(?P<q>[a-f]|i{1,3}|iv|v|vi|[1-6])\)?"
    r"(?=[\s:.,)]))",
    re.IGNORECASE,
)
_PART_ORDER = ("abcdef", ["i", "ii", "iii", "iv", "v", "vi"], "123456")


def _part_answers(text: str, boxes: list[tuple[int, int, int, int]]) -> str | None:
    """"(a) ... \\boxed{6} (b) ... \\boxed{12}" -> "6, 12": one box per labelled part, the
    labels in order from the first, the last box in the last part. None otherwise."""
    if len(boxes) < 2:
        return None
    labels = [(m.start(), (m.group("p") or m.group("q")).lower()) for m in _PART.finditer(text)]
    labels = [(pos, lab) for pos, lab in labels if not any(b0 <= pos < b1 for b0, b1, _, _ in boxes)]
    if len(labels) < 2:
        return None
    names = [lab for _, lab in labels]
    if not any(list(order[: len(names)]) == names for order in _PART_ORDER):
        return None
    answers = []
    for k, (pos, _) in enumerate(labels):
        end = labels[k + 1][0] if k + 1 < len(labels) else len(text)
        inside = [(c0, c1) for b0, _, c0, c1 in boxes if pos <= b0 < end and c0 >= 0]
        if not inside or not text[inside[-1][0] : inside[-1][1]].strip():
            return None
        answers.append(text[inside[-1][0] : inside[-1][1]].strip())
    return ", ".join(answers)


_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer\s*(?:is|:)|the\s+answer\s+is|\banswer\s*(?:\*\*)?\s*:|\*\*answer\*\*\s*:?"
    r"|(?:the\s+)?(?:correct\s+)?(?:choice|option)\s+is)\s*(?:\*\*)?\s*:?\s*",
    re.IGNORECASE,
)
_GSM = re.compile(r"####\s*:?\s*([^\n]+)")
# a reason after the answer: "12, since 12 = 3 * 4", "B because C fails", "D, not A"
_REASON = re.compile(r",?\s+(?:since|because|as|which|where|not)\s", re.IGNORECASE)
# a number that carries its modulus in prose: "42 (mod 1000)", "42 \pmod{1000}"
_MOD_TAIL = re.compile(r"(?<![\d-])(-?\d+)\s*(?:\(\s*mod(?:ulo)?\s*(\d+)\s*\)|\\pmod\s*\{\s*(\d+)\s*\})")
_MATH_SPAN = re.compile(
    r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\\$|[^$\n])+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL
)
_NUMBER = re.compile(r"(?<![A-Za-z\d.])-?\d(?:\d|,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?(?!\d)")
# the last number written with a decimal comma: "2,74" (not "1,2,3", not thousands "2,740")
_COMMA_TAIL = re.compile(r"(?<![\d,.])(-?\d+),(\d+)$")


def _after_phrase(rest: str) -> str | None:
    rest = rest.split("\n", 1)[0].strip().strip("*").strip()
    if not rest:
        return None
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(a):
            close = re.compile(r"(?<!\\)" + re.escape(b))  # `$\$32$`: an escaped $ is no end
            end = close.search(rest, len(a))
            if end:
                return rest[len(a) : end.start()].strip() or None
    m = re.match(r"(.+?)(?:\.\s|\.$|$)", rest)
    ans = (m.group(1) if m else rest).strip().rstrip(".").strip("*").strip()
    ans = _REASON.split(ans, 1)[0].strip()
    return ans or None


def extract_answer(completion: str) -> str | None:
    """The final answer of a model completion, or None (see module docstring for the order)."""
    if not completion:
        return None
    found, content = last_box(completion)
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
        mods = list(_MOD_TAIL.finditer(tail))
        if mods and mods[-1].end() >= nums[-1].end():  # "is 42 (mod 1000)": keep the modulus
            m = mods[-1]
            return f"{m.group(1)} \\pmod{{{m.group(2) or m.group(3)}}}"
        last = nums[-1]
        comma = _COMMA_TAIL.search(tail, 0, last.end())
        if comma and comma.start(2) == last.start() and decimal_comma(comma.group()) is not None:
            return comma.group()  # "2,74": the caller's comparison decides how to read it
        return last.group().replace(" ", "").rstrip(",")
    return None
