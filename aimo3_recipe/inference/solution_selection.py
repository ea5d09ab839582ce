"""Pure answer-selection functions: majority vote (SC@N), confidence-weighted vote, and the
early-stopping test. No model, no I/O: every function takes the answers already extracted.

Answers are grouped by an equivalence key (`answer_key` from evaluation.verifier, so "1/2",
"0.5" and "\\frac{1}{2}" are one vote); a `None` answer (no answer found in the completion)
never votes. Ties are broken deterministically by the answer seen first in sample order, and
every result says whether a tie happened and which answers were tied, so a reader can tell a
clear win from a coin-flip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TIE_BREAK = "first_seen"  # the rule used on ties: the tied answer that appeared earliest


def default_answer_key(answer: str) -> str | None:
    """Equivalence key of an answer: the verifier's `answer_key` (exact rationals, LaTeX
    cleaning; None when nothing is left), else a light whitespace/`$` normalisation."""
    try:
        from aimo3_recipe.evaluation.verifier import answer_key
    except ImportError:  # the verifier is optional at import time (a partial install)
        key = " ".join(answer.replace("$", "").split()).rstrip(".")
        return key or None
    return answer_key(answer)


@dataclass
class VoteResult:
    answer: str | None  # the winning answer (first-seen spelling of its group); None if no votes
    votes: dict[str, float]  # group key -> votes (counts, or summed weights when weighted)
    representatives: dict[str, str]  # group key -> first-seen answer string of that group
    winner_key: str | None  # group key of the winner
    tie: bool  # True when several groups shared the top score
    tied: list[str] = field(default_factory=list)  # the tied answers (first-seen order)
    tie_break: str = TIE_BREAK  # how the tie was broken
    num_valid: int = 0  # candidates that had an answer

    @property
    def top_votes(self) -> float:
        return self.votes[self.winner_key] if self.winner_key is not None else 0.0


def group_answers(answers: Sequence[str | None],
                  key: Callable[[str], str | None] = default_answer_key,
                  ) -> tuple[list[str | None], dict[str, str]]:
    """Key of each answer (None stays None) and the first-seen answer string of each key."""
    keys: list[str | None] = []
    reps: dict[str, str] = {}
    for a in answers:
        if a is None or not str(a).strip():
            keys.append(None)
            continue
        k = key(str(a))
        keys.append(k)
        if k is not None:  # an answer with no usable content votes like no answer
            reps.setdefault(k, str(a))
    return keys, reps


def _vote(answers: Sequence[str | None], weights: Sequence[float],
          key: Callable[[str], str | None]) -> VoteResult:
    if len(weights) != len(answers):
        raise ValueError(f"got {len(answers)} answers but {len(weights)} weights")
    keys, reps = group_answers(answers, key)
    votes: dict[str, float] = {}
    for k, w in zip(keys, weights):
        if k is not None:
            votes[k] = votes.get(k, 0.0) + float(w)
    if not votes:
        return VoteResult(None, {}, {}, None, tie=False, num_valid=0)
    best = max(votes.values())
    # dicts keep insertion order, i.e. first-seen order: the first key at the top score wins
    top = [k for k, v in votes.items() if math.isclose(v, best, rel_tol=1e-9, abs_tol=1e-12)]
    winner = top[0]
    return VoteResult(answer=reps[winner], votes=votes, representatives=reps, winner_key=winner,
                      tie=len(top) > 1, tied=[reps[k] for k in top] if len(top) > 1 else [],
                      num_valid=sum(k is not None for k in keys))


def majority_vote(answers: Sequence[str | None],
                  key: Callable[[str], str | None] = default_answer_key) -> VoteResult:
    """Self-consistency (SC@N): the most frequent answer group; ties -> first seen."""
    return _vote(answers, [1.0] * len(answers), key)


def confidence_weight(logprobs: Sequence[float] | None) -> float:
    """exp(mean token log-prob) of a completion: its geometric-mean token probability, in
    (0, 1]. Length-neutral, unlike the sum. No log-probs -> 1.0 (counts as a plain vote)."""
    if not logprobs:
        return 1.0
    return math.exp(sum(logprobs) / len(logprobs))


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float],
                  key: Callable[[str], str | None] = default_answer_key) -> VoteResult:
    """Votes weighted by confidence (use `confidence_weight`); ties -> first seen."""
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"vote weights must be finite and >= 0; got {list(weights)}")
    return _vote(answers, weights, key)


def agreement(answers: Sequence[str | None],
              key: Callable[[str], str | None] = default_answer_key) -> int:
    """Size of the largest group of equal answers (0 when none has an answer)."""
    keys, _ = group_answers(answers, key)
    counts: dict[str, int] = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    return max(counts.values(), default=0)


def should_stop_early(answers: Sequence[str | None], k: int | None,
                      key: Callable[[str], str | None] = default_answer_key) -> bool:
    """Early stopping: True once `k` answers agree (k None/0 disables it)."""
    return bool(k) and agreement(answers, key) >= k  # type: ignore[operator]
