"""The solver's log: one JSON line per problem (`problems.jsonl`), every attempt in it, also
the cancelled ones, and a summary of the run (`summary.json`).

This is what the replay simulator reads (replay.py), so each attempt keeps what a replay of
another time, early-stop or selection rule needs: its normalised answer, its confidence
(the weight the configured rule used, and entropy statistics for the other rules), its
tokens and tool calls, and when it ended relative to the problem's start. A cancelled
attempt keeps what it had written up to its last finished turn (vLLM drops the tokens of the
turn in flight), its partial answer if it already had one, and the time it was cancelled.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENTROPY_TAILS = (64, 128, 256, 512)  # tail windows whose entropy statistics are logged


@dataclass
class AttemptRecord:
    index: int  # attempt number within the problem (0..num_attempts-1)
    answer: int | None  # normalised AIMO answer (None: no valid answer)
    answer_status: str  # ok | reduced | out_of_range | not_integer | none (answers.py)
    raw_answer: str | None  # what was extracted from the attempt's own text
    finish_reason: str  # a FinishReason value (inference/finish_reason.py); 'error' when it failed
    time_s: float  # seconds from the problem's start to the attempt's end (or its cancel)
    tokens: int  # model tokens sampled
    tool_calls: int = 0  # python cells run
    tool_errors: int = 0  # cells that failed
    tool_timeouts: int = 0  # cells killed at the time limit
    tool_seconds: float = 0.0  # wall clock its cells took
    mean_logprob: float | None = None  # mean log-prob of its sampled tokens
    weight: float = 1.0  # its vote weight under the configured rule
    entropy: dict[str, float] = field(default_factory=dict)  # entropy_stats() of its tokens
    text: str | None = None  # its transcript (SolverConfig.log_text)
    error: str | None = None  # what failed in it (engine, grader): it did not vote

    @property
    def cancelled(self) -> bool:
        return self.finish_reason == "cancelled"


@dataclass
class ProblemRecord:
    id: str  # the problem's id
    problem: str  # its text
    order: int  # problems begun before it in this run
    start_s: float  # run clock at its start
    budget_s: float  # what the time rule gave it
    time_left_s: float  # the run's time left when it began
    problems_left: int  # problems still to do, this one included
    used_s: float  # seconds it took, selection and logging included
    answer: int  # the answer returned
    fallback: bool  # no attempt had a valid answer: `fallback_answer` was returned
    stop_reason: str  # k_agree | runner_up | deadline | all_done | no_time | error
    selection: dict[str, Any]  # strategy, reason, votes, counts, tie
    modulus: int | None  # the modulus the problem asks for, if any
    attempts: list[AttemptRecord]  # every attempt, in index order
    reference: int | None = None  # the right answer, when the caller knows it (local gateway)
    correct: bool | None = None  # answer == reference (None: no reference)
    error: str | None = None  # what failed outside any one attempt (engine, model load)
    sandbox_errors: int = 0  # python cells whose sandbox failed (the cell counted as failed)

    @property
    def num_cancelled(self) -> int:
        return sum(a.cancelled for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_cancelled"] = self.num_cancelled
        d["tokens"] = sum(a.tokens for a in self.attempts)
        return d


def entropy_stats(entropies_T: Sequence[float] | None) -> dict[str, float]:
    """Mean and median token entropy of an attempt, overall and over each tail window:
    {"mean", "median", "tail64_mean", "tail64_median", ...} ({} without entropies)."""
    if not entropies_T:
        return {}
    out: dict[str, float] = {}
    for tail in (None, *ENTROPY_TAILS):
        xs = list(entropies_T[-tail:]) if tail else list(entropies_T)
        name = f"tail{tail}_" if tail else ""
        out[name + "mean"] = round(sum(xs) / len(xs), 6)
        out[name + "median"] = round(statistics.median(xs), 6)
    return out


def _clean(x: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def append_record(path: str | Path, record: ProblemRecord) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as f:
        f.write(json.dumps(_clean(record.to_dict())) + "\n")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The problem records of a problems.jsonl, as dicts."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(records: Sequence[ProblemRecord], total_s: float, elapsed_s: float
              ) -> dict[str, Any]:
    """The run's summary: problems, answers, fallbacks, stops, attempts, time."""
    stops: dict[str, int] = {}
    for r in records:
        stops[r.stop_reason] = stops.get(r.stop_reason, 0) + 1
    graded = [r for r in records if r.correct is not None]
    attempts = [a for r in records for a in r.attempts]
    return {
        "problems": len(records),
        "answers_valid": sum(0 <= r.answer <= 99999 for r in records),
        "fallbacks": sum(r.fallback for r in records),
        "errors": sum(r.error is not None for r in records),
        "stop_reasons": stops,
        "attempts": len(attempts),
        "attempts_cancelled": sum(a.cancelled for a in attempts),
        "attempt_errors": sum(a.error is not None for a in attempts),
        "sandbox_errors": sum(r.sandbox_errors for r in records),
        "attempts_with_valid_answer": sum(a.answer is not None for a in attempts),
        "tokens": sum(a.tokens for a in attempts),
        "tool_calls": sum(a.tool_calls for a in attempts),
        "time_used_s": round(sum(r.used_s for r in records), 3),
        "elapsed_s": round(elapsed_s, 3),
        "total_budget_s": total_s,
        "within_budget": elapsed_s <= total_s,
        "graded": len(graded),
        "correct": sum(bool(r.correct) for r in graded),
    }
