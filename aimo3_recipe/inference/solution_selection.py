"""Answer selection: the one layer every caller (evaluation, `aimo3 generate` / MathGenerator,
the competition solver) goes through, `select(strategy, candidates) -> Selection`, and the
small pure voting functions under it (majority vote SC@N, weighted vote, early stopping).
No model and no I/O here: GenSelect's model call comes in as a `judge` callable
(genselect.make_judge), and every candidate carries its answer already extracted.

Answers are grouped by an equivalence key (`answer_key` from the grader, so "1/2",
"0.5" and "\\frac{1}{2}" are one vote); a `None` answer (no answer found in the completion)
never votes. Ties are broken deterministically by the answer seen first in sample order, and
every result says whether a tie happened and which answers were tied, so a reader can tell a
clear win from a coin-flip. The chosen candidate of a vote is the first candidate (in sample
order) of the winning group, so `Selection.answer` is that candidate's own spelling.

Strategies (`select`):
- `greedy`: candidate 0's answer (the caller drew one temperature-0 completion).
- `majority_vote`, `tir`: the most frequent answer group (`tir`: over TIR rollouts, SC-TIR).
- `weighted_vote`: each vote weighs `Candidate.weight()`: the caller's `score` when set (e.g.
  `entropy_weight` of its token entropies), else exp(mean token log-prob), the candidate's
  geometric-mean token probability (no or non-finite log-probs: 1.0, a plain vote).
- `vote_score` (the competition solver's vote-led score, not a generation strategy): each
  answer group scores  share + confidence * conf + consensus * finished_share,  where share =
  its votes / candidates with an answer, conf = the median `Candidate.weight()` of its members
  / the largest weight of all (in [0, 1]), finished_share = its share among candidates that
  were not truncated; `VoteScore` holds the two small coefficients, so the vote leads and
  confidence and consensus only break near-ties. Highest score wins; ties -> first seen.
- `genselect`: the judge picks among the candidates (genselect.py). Candidates cut off before
  they finished (`finish_reason` in `TRUNCATED`) are not shown to it. The one fallback rule:
  when no finished candidate has an answer, or no judgment in any window could be parsed, the
  answer is the `majority_vote` answer over all candidates (`Selection.fallback`, reason
  "fallback: ..."). A window whose judgment alone is unusable advances its most-voted
  candidate and the tournament goes on (counted in `GenSelectReport.fallbacks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from aimo3_recipe.inference.finish_reason import TRUNCATED as _TRUNCATED
from aimo3_recipe.inference.finish_reason import is_truncated
from aimo3_recipe.inference.strategies import STRATEGIES

if TYPE_CHECKING:  # genselect imports the engine; the layer only needs the report's type
    from aimo3_recipe.inference.genselect import GenSelectReport

TIE_BREAK = "first_seen"  # the rule used on ties: the tied answer that appeared earliest
# what `select` takes: the generation strategies and the solver's selection-only rules
SELECTION_STRATEGIES = (*STRATEGIES, "vote_score")


def default_answer_key(answer: str) -> str | None:
    """Equivalence key of an answer: the verifier's `answer_key` (exact rationals, LaTeX
    cleaning; None when nothing is left), else a light whitespace/`$` normalisation."""
    try:
        from aimo3_recipe.grader import answer_key
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
    return _vote_keys(keys, reps, weights)


def _vote_keys(keys: Sequence[str | None], reps: dict[str, str],
               weights: Sequence[float]) -> VoteResult:
    """The vote itself, on answers already grouped (`group_answers`)."""
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
    return mean_logprob_confidence(sum(logprobs) / len(logprobs) if logprobs else None)


def mean_logprob_confidence(mean_logprob: float | None) -> float:
    """exp(mean_logprob), or 1.0 (a plain vote) when it is missing or not finite: samples.jsonl
    stores a non-finite mean as null, so this is the rule both the stored and the live
    candidates can follow."""
    if mean_logprob is None or not math.isfinite(mean_logprob):
        return 1.0
    return math.exp(mean_logprob)


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


def runner_up_cannot_catch_up(answers: Sequence[str | None], remaining: int,
                              key: Callable[[str], str | None] = default_answer_key) -> bool:
    """Early stopping: True once the runner-up, even if all `remaining` unfinished attempts
    joined it, cannot pass the leader: second + remaining <= first (counts; a leader needed)."""
    keys, _ = group_answers(answers, key)
    counts: dict[str, int] = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    top = sorted(counts.values(), reverse=True) + [0, 0]
    return top[0] > 0 and top[1] + max(0, remaining) <= top[0]


def early_stop_reason(answers: Sequence[str | None], remaining: int, *, k: int | None = None,
                      runner_up: bool = False,
                      key: Callable[[str], str | None] = default_answer_key) -> str | None:
    """Why to stop sampling now: "k_agree" (`k` answers agree), "runner_up" (the runner-up
    cannot catch up with `remaining` attempts left), "all_done" (none left), or None."""
    if should_stop_early(answers, k, key):
        return "k_agree"
    if remaining <= 0:
        return "all_done"
    if runner_up and runner_up_cannot_catch_up(answers, remaining, key):
        return "runner_up"
    return None


# -- entropy confidence (the AIMO3 solvers' vote weight) -----------------------------------
def topk_entropy(top_logprobs_K: Sequence[float]) -> float:
    """Entropy (nats) of one token's distribution, from the log-probs of its top-k
    alternatives renormalised over those k (what an engine returning top-k log-probs allows)."""
    if not top_logprobs_K:
        raise ValueError("topk_entropy needs at least one log-prob")
    top = max(top_logprobs_K)
    ps = [math.exp(lp - top) for lp in top_logprobs_K]
    z = sum(ps)
    return -sum(p / z * math.log(p / z) for p in ps if p > 0)


def entropy_weight(entropies_T: Sequence[float] | None, *, tail: int | None = None,
                   reduce: str = "mean", eps: float = 1e-6) -> float:
    """1 / (mean or median token entropy over the last `tail` tokens, all when None) + eps
    guard: a confident attempt (low entropy) gets a large vote. No entropies -> 1.0. Set the
    result as `Candidate.score` to weight `weighted_vote` (or GenSelect's representatives)."""
    if not entropies_T:
        return 1.0
    xs = list(entropies_T[-tail:] if tail else entropies_T)
    if reduce == "mean":
        h = sum(xs) / len(xs)
    elif reduce == "median":
        ys = sorted(xs)
        mid = len(ys) // 2
        h = ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2
    else:
        raise ValueError(f"reduce must be 'mean' or 'median'; got {reduce!r}")
    return 1.0 / max(h, eps)


# -- the selection layer ----------------------------------------------------------------------
# finish reasons of a candidate cut off by a limit before it finished (finish_reason.py)
TRUNCATED = _TRUNCATED


@dataclass(frozen=True)
class VoteScore:
    """Coefficients of the `vote_score` strategy (module docstring): both small, so the vote
    share leads."""

    confidence: float = 0.1  # x (median member weight / largest weight), in [0, 1]
    consensus: float = 0.05  # x (share among candidates that were not truncated)


@dataclass
class Candidate:
    """One sampled solution as the selection layer sees it (built from a generator's
    candidate or from a samples.jsonl record)."""

    answer: str | None  # extracted final answer (None: none found)
    text: str = ""  # the completion (TIR: the transcript); GenSelect shows it to the judge
    logprobs: Sequence[float] | None = None  # per-token log-probs of the sampled tokens...
    mean_logprob: float | None = None  # ...or only their mean (what samples.jsonl stores)
    entropies: Sequence[float] | None = None  # per-token entropy (nats), where the engine has it
    score: float | None = None  # caller's vote weight (e.g. entropy_weight); overrides log-probs
    finish_reason: str = "stop"  # a finish_reason.FinishReason value

    @property
    def truncated(self) -> bool:
        return is_truncated(self.finish_reason)

    def weight(self) -> float:
        """Its vote in `weighted_vote`: `score` if set, else exp(mean token log-prob)."""
        if self.score is not None:
            return float(self.score)
        if self.mean_logprob is not None:
            return mean_logprob_confidence(self.mean_logprob)
        return confidence_weight(self.logprobs)


@dataclass
class Selection:
    """What `select` chose, and why."""

    strategy: str  # the strategy that chose
    answer: str | None  # the chosen answer, as its candidate spelled it (None: no answer)
    index: int | None  # the chosen candidate (None: no candidate had an answer; greedy: 0)
    reason: str  # "greedy", "majority 5/8", "weighted 1.9 of 3.2", "genselect", "fallback: ..."
    votes: dict[str, float] = field(default_factory=dict)  # key -> votes (weights if weighted)
    counts: dict[str, int] = field(default_factory=dict)  # key -> candidates with that answer
    key: str | None = None  # answer key of the chosen answer
    tie: bool = False  # the vote's top was shared (GenSelect: of the vote behind it)
    tied: list[str] = field(default_factory=list)  # the tied answers, first-seen order
    tie_break: str = TIE_BREAK  # how a tie was broken
    fallback: bool = False  # genselect: the judge did not decide, the majority answer stands
    genselect: GenSelectReport | None = None  # the judge's report (genselect only)


# (texts, answer keys with None = not selectable, confidences) -> the judge's report
Judge = Callable[[Sequence[str], Sequence["str | None"], Sequence[float]], "GenSelectReport"]


def _median(xs: Sequence[float]) -> float:
    ys = sorted(xs)
    mid = len(ys) // 2
    return ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2


def vote_scores(cands: Sequence[Candidate], keys: Sequence[str | None],
                coef: VoteScore) -> dict[str, float]:
    """Group key -> its `vote_score` (module docstring), in first-seen order."""
    weights = [c.weight() for c in cands]
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"vote weights must be finite and >= 0; got {weights}")
    valid = [i for i, k in enumerate(keys) if k is not None]
    finished = [i for i in valid if not cands[i].truncated]
    top_w = max((weights[i] for i in valid), default=0.0)
    members: dict[str, list[int]] = {}
    for i in valid:
        members.setdefault(keys[i], []).append(i)  # type: ignore[arg-type]
    out: dict[str, float] = {}
    for k, idx in members.items():
        conf = _median([weights[i] for i in idx]) / top_w if top_w > 0 else 0.0
        done = sum(1 for i in idx if not cands[i].truncated)
        out[k] = (len(idx) / len(valid) + coef.confidence * conf
                  + coef.consensus * (done / len(finished) if finished else 0.0))
    return out


def select(strategy: str, candidates: Sequence[Candidate], *, judge: Judge | None = None,
           key: Callable[[str], str | None] = default_answer_key,
           vote_score: VoteScore | None = None) -> Selection:
    """Choose one answer among `candidates` with `strategy` (see the module docstring for each
    strategy, the tie-break and GenSelect's fallback). `judge` is required for genselect
    (genselect.make_judge); `key` groups equivalent answers; `vote_score` sets the
    coefficients of the vote_score strategy (default `VoteScore()`)."""
    if strategy not in SELECTION_STRATEGIES:
        raise ValueError(f"strategy must be one of {SELECTION_STRATEGIES}; got {strategy!r}")
    cands = list(candidates)
    keys, reps = group_answers([c.answer for c in cands], key)
    counts: dict[str, int] = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    if strategy == "greedy":
        if not cands:
            return Selection(strategy, None, None, "no candidates")
        return Selection(strategy, cands[0].answer, 0, "greedy" if keys[0] else "greedy: no answer",
                         votes={k: float(v) for k, v in counts.items()}, counts=counts,
                         key=keys[0])
    if strategy == "vote_score":
        scores = vote_scores(cands, keys, vote_score or VoteScore())
        vote = _vote_keys([k if k in scores else None for k in keys], reps,
                          [scores[k] / counts[k] if k is not None else 0.0 for k in keys])
        if vote.winner_key is None:
            return Selection(strategy, None, None, "no answers", counts=counts)
        w = vote.winner_key
        reason = f"score {scores[w]:.3g} ({counts[w]}/{len(cands)} votes)"
        if vote.tie:
            reason += f", tie of {len(vote.tied)} broken by {vote.tie_break}"
        return Selection(strategy, vote.answer, keys.index(w), reason, votes=scores,
                         counts=counts, key=w, tie=vote.tie, tied=list(vote.tied))
    weighted = strategy == "weighted_vote"
    weights = [c.weight() for c in cands] if weighted else [1.0] * len(cands)
    if weighted and any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"vote weights must be finite and >= 0; got {weights}")
    vote = _vote_keys(keys, reps, weights)
    if vote.winner_key is None:
        reason = "no answers"
    elif weighted:
        reason = f"weighted {vote.top_votes:.3g} of {sum(vote.votes.values()):.3g}"
    else:
        reason = f"majority {vote.top_votes:g}/{len(cands)}"
    if vote.tie:
        reason += f", tie of {len(vote.tied)} broken by {vote.tie_break}"
    index = keys.index(vote.winner_key) if vote.winner_key is not None else None
    sel = Selection(strategy, vote.answer, index, reason, votes=dict(vote.votes), counts=counts,
                    key=vote.winner_key, tie=vote.tie, tied=list(vote.tied))
    if strategy != "genselect":
        return sel
    if judge is None:
        raise ValueError("select('genselect', ...) needs a judge (genselect.make_judge)")
    judge_keys = [None if c.truncated else k for c, k in zip(cands, keys)]
    report = judge([c.text for c in cands], judge_keys, [c.weight() for c in cands])
    undecided = report.reason == "tournament" and report.fallbacks == len(report.judgments)
    if report.chosen is not None and not undecided:
        i = report.chosen
        why = "genselect" if report.reason == "tournament" else f"genselect: {report.reason}"
        return replace(sel, answer=cands[i].answer, index=i, key=keys[i], reason=why,
                       genselect=report)
    if sel.index is None:
        why = "no candidate has an answer"
    else:
        why = ("no usable judgment" if undecided else "no finished candidate has an answer")
        why += f"; {sel.reason}"
    return replace(sel, reason=f"fallback: {why}", fallback=True, genselect=report)
