"""Small LaTeX/maths string helpers shared by the data layer, the verifier and inference."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def brace_ends(text: str) -> dict[int, int]:
    """Index after each `{` -> index just past its matching `}`, in one linear pass. A backslash
    escapes the next character (so `\\{` and `\\}` are not braces)."""
    ends: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            i += 2
            continue
        if c == "{":
            stack.append(i + 1)
        elif c == "}" and stack:
            ends[stack.pop()] = i + 1
        i += 1
    return ends


def find_boxed(text: str) -> list[str]:
    """Contents of every closed `\\boxed{...}` / `\\fbox{...}` in order (nested braces kept).

    An unclosed box (a completion cut at max tokens) contributes nothing. Linear time, so a
    degenerate completion repeating `\\boxed{` thousands of times cannot stall a reward loop.
    """
    found: list[tuple[int, str]] = []
    ends: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        if ends is None:
            ends = brace_ends(text)
        end = ends.get(m.end())
        if end is not None:
            found.append((m.start(), text[m.end() : end - 1]))
    # `\boxed 5` (no braces) appears in some solutions
    found += [(m.start(), m.group(1)) for m in re.finditer(r"\\boxed\s+([^\s{$]+)", text)]
    found.sort(key=lambda x: x[0])
    return [v for _, v in found]


def last_boxed(text: str) -> str | None:
    """The last closed `\\boxed{}` content, or None."""
    boxes = find_boxed(text)
    return boxes[-1].strip() if boxes else None


def has_boxed(text: str) -> bool:
    """Whether the text contains at least one closed `\\boxed{}` (the format reward)."""
    return bool(find_boxed(text))
