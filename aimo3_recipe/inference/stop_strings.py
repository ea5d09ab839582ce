"""Stop strings against sampled token ids: where generation should have stopped.

A stop string is text, but an engine samples tokens, and one token may complete a stop string
and carry more text past it. Both the transformers engine (which checks stop strings only
every few tokens) and the TIR loop (which must cut whatever an engine sampled past a stop
marker, so tool output is never the model's) need the same answer: the shortest prefix of the
sampled ids whose decoded text contains a stop string. That is what vLLM returns (it checks
after every token), so the engines agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def cut_at_markers(text: str, markers: Sequence[str]) -> tuple[str, str | None, bool]:
    """Cut `text` after the first stop marker it contains (the earliest-starting one).
    Returns (text, marker, whether anything was cut)."""
    best = None
    for m in markers:
        i = text.find(m) if m else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, m)
    if best is None:
        return text, None, False
    end = best[0] + len(best[1])
    return text[:end], best[1], end < len(text)


def stop_prefix_len(ids: Sequence[int], decode: Callable[[list[int]], str],
                    stops: Sequence[str], text: str | None = None) -> int | None:
    """The length of the shortest prefix of `ids` whose decoded text contains one of `stops`;
    None when the whole decoded text contains none. Containment only grows with the prefix, so
    a bisection finds it in O(log n) decodes; an engine that honoured the stop ends on the
    completing token, which the first check (one decode) sees without bisecting. `text`:
    `decode(ids)` where the caller has it already."""
    stops = [s for s in stops if s]
    ids = list(ids)
    if not stops:
        return None
    if text is None:
        text = decode(ids)
    if not any(s in text for s in stops):
        return None
    if not any(s in decode(ids[:-1]) for s in stops):
        return len(ids)
    lo, hi = 1, len(ids) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if any(s in decode(ids[:mid]) for s in stops) else (mid + 1, hi)
    return lo
