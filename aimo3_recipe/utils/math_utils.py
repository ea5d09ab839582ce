"""Small LaTeX/maths string helpers shared by the data layer, the verifier and inference."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def find_boxed(text: str) -> list[str]:
    """Contents of every closed `\\boxed{...}` / `\\fbox{...}` in order (nested braces kept).

    An unclosed box (a completion cut at max tokens) contributes nothing.
    """
    out: list[str] = []
    for m in _BOX_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2  # skip escaped characters such as \{ and \}
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            out.append(text[m.end(): i - 1])
    # `\boxed 5` (no braces) appears in some solutions
    out_positions = [(m.start(), m.group(1)) for m in re.finditer(r"\\boxed\s+([^\s{$]+)", text)]
    if out_positions:
        braced = [(m.start(), None) for m in _BOX_RE.finditer(text)]
        merged = sorted(out_positions + braced, key=lambda x: x[0])
        result, it = [], iter(out)
        for _, val in merged:
            if val is None:
                nxt = next(it, None)
                if nxt is not None:
                    result.append(nxt)
            else:
                result.append(val)
        return result
    return out


def last_boxed(text: str) -> str | None:
    """The last closed `\\boxed{}` content, or None."""
    boxes = find_boxed(text)
    return boxes[-1].strip() if boxes else None


def has_boxed(text: str) -> bool:
    """Whether the text contains at least one closed `\\boxed{}` (the format reward)."""
    return bool(find_boxed(text))
