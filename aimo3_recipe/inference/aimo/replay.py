"""Replay simulator: tune time, early-stop and selection rules on logged attempts, on a CPU.

A log of attempts (the solver's problems.jsonl, or an evaluation's samples.jsonl, which is
a log of SC@N attempts) says, per problem, what each attempt answered, whether that was
right, how confident it was and when it ended. `replay` re-runs a whole competition from
it under any `ReplayRule` (time rule, attempts per problem, early stop, selection) many
times: each repetition shuffles the problem order and plays the two private runs, each run
drawing its attempts from the problem's logged pool; a problem scores 1 / 0.5 / 0 over the
two runs (as Kaggle's penalised accuracy). It reports the expected score, the 2.5-97.5%
range of one submission's score, the Monte Carlo standard error, and the time used.

One problem under a rule: its attempts run concurrently and end at their logged times
(scaled by `time_scale`); the early-stop rules (solution_selection.early_stop_reason) are
checked as each one ends, the budget and deadline come from the same `TimeKeeper` the
solver uses (on a SimClock), and the finished attempts go through the same `select` in the
order they finished. Scoring a tie: "expected" (default) scores the fraction of tied
answers that are right, the expected score of a random tie-break (evaluation's maj@k does
the same); "first_seen" scores the solver's own deterministic choice. An answer group is
right when any of its attempts was judged right (as evaluation's majority_score).

Drawing attempts: "subset" (without replacement; needs a pool of at least num_attempts),
"bootstrap" (with replacement), "none" (the first num_attempts in log order, every run the
same), "auto" (subset when the pool is larger than num_attempts, else bootstrap).

Limits, stated: a cancelled attempt in a solver log never ends in a replay (its answer is
unknown), so a replay is exact only for rules that stop no later than the logged run did;
log without early stopping (or evaluate SC@N) to tune freely. Attempt times are those of the
logged concurrency (num_attempts attempts sharing the GPU); replaying another number of
attempts keeps them. samples.jsonl has no per-attempt times: they are num_tokens x
`sec_per_token`. GenSelect needs the model and cannot be replayed.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ConfigError, DatasetError
from aimo3_recipe.inference.aimo.budget import SimClock, TimeKeeper, TimeRule
from aimo3_recipe.inference.finish_reason import FinishReason, is_truncated
from aimo3_recipe.inference.solution_selection import (
    Candidate,
    VoteScore,
    early_stop_reason,
    mean_logprob_confidence,
    select,
)

RESAMPLE = ("auto", "subset", "bootstrap", "none")
TIE_SCORES = ("expected", "first_seen")


# ---------------------------------------------------------------- logs
@dataclass
class LoggedAttempt:
    key: str | None  # answer group key (None: no valid answer; never votes)
    correct: bool  # this attempt's answer was judged right
    time_s: float  # seconds from the problem's start to its end (inf: never ended)
    tokens: int = 0  # tokens it sampled
    weight: float = 1.0  # its logged vote weight
    mean_logprob: float | None = None  # mean token log-prob
    entropy: dict[str, float] = field(default_factory=dict)  # log.entropy_stats
    truncated: bool = False  # cut off by a limit (finish_reason.is_truncated)


@dataclass
class LoggedProblem:
    id: str
    attempts: list[LoggedAttempt]  # the pool, in log order
    fallback_correct: bool = False  # the solver's fallback answer would be right


def _same(answer: str) -> str:
    return answer


def load_solver_log(path: str | Path, answers: dict[str, int] | None = None,
                    fallback_answer: int = 0) -> list[LoggedProblem]:
    """Problems of a solver problems.jsonl (log.py); `answers` (id -> int) when the log has
    no references."""
    from aimo3_recipe.inference.aimo.log import read_records

    out = []
    for rec in read_records(path):
        ref = rec.get("reference")
        if ref is None and answers:
            ref = answers.get(str(rec["id"]))
        if ref is None:
            raise DatasetError(f"{path}: problem {rec['id']!r} has no reference answer; run the "
                               "gateway on a CSV with answers, or pass answers (--answers CSV)")
        atts = []
        for a in sorted(rec["attempts"], key=lambda a: (a["time_s"], a["index"])):
            cancelled = a["finish_reason"] == "cancelled"
            atts.append(LoggedAttempt(
                key=None if a["answer"] is None or cancelled else str(a["answer"]),
                correct=(a["answer"] == ref) and not cancelled,
                time_s=math.inf if cancelled else float(a["time_s"]), tokens=int(a["tokens"]),
                weight=float(a.get("weight") or 1.0), mean_logprob=a.get("mean_logprob"),
                entropy=dict(a.get("entropy") or {}),
                truncated=is_truncated(a["finish_reason"])))
        out.append(LoggedProblem(str(rec["id"]), atts, fallback_correct=fallback_answer == ref))
    return out


def load_samples(path: str | Path, sec_per_token: float = 0.01) -> list[LoggedProblem]:
    """Problems of an evaluation's samples.jsonl: its sampled pass ("sampled" records), one
    attempt per completion, timed as num_tokens x sec_per_token (the file has no times)."""
    groups: dict[int, dict[int, dict[str, Any]]] = {}  # a resumed run may repeat a line
    with Path(path).open() as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if "header" in rec or rec.get("kind") != "sampled":
                continue
            per = groups.setdefault(int(rec["problem_index"]), {})
            per[int(rec.get("sample_index", len(per)))] = rec
    out = []
    for idx in sorted(groups):
        recs = [groups[idx][i] for i in sorted(groups[idx])]
        atts = [LoggedAttempt(
            key=r.get("answer_key"), correct=bool(r["correct"]),
            time_s=float(r.get("num_tokens", 0)) * sec_per_token,
            tokens=int(r.get("num_tokens", 0)),
            weight=mean_logprob_confidence(r.get("mean_logprob")),
            mean_logprob=r.get("mean_logprob"), truncated=is_truncated(r.get("finish_reason")))
            for r in recs]
        out.append(LoggedProblem(str(recs[0].get("problem_id", idx)), atts))
    return out


def load_logs(paths: Sequence[str | Path], *, answers: dict[str, int] | None = None,
              sec_per_token: float = 0.01) -> list[LoggedProblem]:
    """Solver logs and/or samples.jsonl files (told apart by their first line); a problem
    seen in several logs pools all its attempts."""
    merged: dict[str, LoggedProblem] = {}
    for p in paths:
        with Path(p).open() as f:
            first = f.readline()
        is_samples = first.strip().startswith('{"header"')
        probs = load_samples(p, sec_per_token) if is_samples else load_solver_log(p, answers)
        for prob in probs:
            if prob.id in merged:
                merged[prob.id].attempts.extend(prob.attempts)
            else:
                merged[prob.id] = prob
    if not merged:
        raise DatasetError(f"no problems with attempts found in {list(map(str, paths))}")
    return list(merged.values())


# ---------------------------------------------------------------- rules
@dataclass
class ReplayRule(TimeRule):
    name: str = "rule"  # the rule's name in the table
    num_attempts: int = 8  # attempts per problem
    early_stop_k: int = 4  # stop once this many agree (0: off)
    early_stop_runner_up: bool = False  # stop once the runner-up cannot catch up
    selection: str = "majority_vote"  # majority_vote | weighted_vote | vote_score
    confidence: str = "weight"  # weight (logged) | logprob | none | entropy_<stat> (tail256_mean)
    vote_confidence: float = 0.1  # vote_score: weight of the confidence term
    vote_consensus: float = 0.05  # vote_score: weight of the consensus term
    time_scale: float = 1.0  # multiply logged attempt times (a CPU log at GPU pace)
    overhead_s: float = 0.0  # seconds per problem besides its attempts (selection, logging)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selection not in ("majority_vote", "weighted_vote", "vote_score"):
            raise ConfigError(f"replay selection must be majority_vote, weighted_vote or "
                              f"vote_score (GenSelect needs the model); got {self.selection!r}")
        if self.num_attempts < 1:
            raise ConfigError(f"num_attempts must be >= 1; got {self.num_attempts}")
        if not (self.confidence in ("weight", "logprob", "none")
                or self.confidence.startswith("entropy_")):
            raise ConfigError(f"confidence must be weight, logprob, none or entropy_<stat>; "
                              f"got {self.confidence!r}")


def parse_rule(spec: str, **defaults: Any) -> ReplayRule:
    """"name:field=value,field=value" (fields of ReplayRule) -> ReplayRule; `defaults` fill
    fields the spec does not set."""
    from aimo3_recipe.config import from_dict

    name, _, body = spec.partition(":") if ":" in spec else ("", "", spec)
    values: dict[str, Any] = dict(defaults)
    for part in filter(None, (x.strip() for x in body.split(","))):
        k, sep, v = part.partition("=")
        if not sep:
            raise ConfigError(f"rule {spec!r}: {part!r} is not field=value")
        values[k.strip()] = v.strip()
    values["name"] = name or body or "rule"
    return from_dict(ReplayRule, values)


def attempt_confidence(a: LoggedAttempt, how: str) -> float:
    """The vote weight of an attempt under a confidence rule (ReplayRule.confidence)."""
    if how == "weight":
        return a.weight
    if how == "logprob":
        return mean_logprob_confidence(a.mean_logprob)
    if how == "none":
        return 1.0
    h = a.entropy.get(how.removeprefix("entropy_"))
    return 1.0 / max(h, 1e-6) if h is not None else 1.0


# ---------------------------------------------------------------- one problem, one run
@dataclass
class ProblemReplay:
    score: float  # 1 right, 0 wrong, a fraction for an expected tie-break
    used_s: float  # seconds it took
    stop_reason: str  # k_agree | runner_up | deadline | all_done | no_time
    finished: int  # attempts that ended before it stopped
    fallback: bool  # no finished attempt had an answer


def replay_problem(attempts_N: Sequence[LoggedAttempt], rule: ReplayRule, deadline_s: float,
                   fallback_correct: bool = False, tie_score: str = "expected") -> ProblemReplay:
    """One problem's attempts (in draw order) under `rule`, stopped at `deadline_s` at the
    latest (seconds from its start)."""
    n = len(attempts_N)
    if deadline_s <= 0 or n == 0:
        return ProblemReplay(float(fallback_correct), 0.0, "no_time", 0, True)
    order = sorted(range(n), key=lambda i: (attempts_N[i].time_s * rule.time_scale, i))
    done: list[int] = []
    stop_t, reason = deadline_s, "deadline"
    for i in order:
        t = attempts_N[i].time_s * rule.time_scale
        if t > deadline_s:
            break
        done.append(i)
        if len(done) == n:
            stop_t, reason = t, "all_done"
            break
        why = early_stop_reason([attempts_N[j].key for j in done], n - len(done),
                                k=rule.early_stop_k or None,
                                runner_up=rule.early_stop_runner_up, key=_same)
        if why is not None:
            stop_t, reason = t, why
            break
    fin = [attempts_N[i] for i in done]
    cands = [Candidate(a.key, score=attempt_confidence(a, rule.confidence),
                       finish_reason=FinishReason.LENGTH if a.truncated else FinishReason.STOP)
             for a in fin]
    sel = select(rule.selection, cands, key=_same,
                 vote_score=VoteScore(rule.vote_confidence, rule.vote_consensus))
    used = stop_t + rule.overhead_s
    if sel.key is None:
        return ProblemReplay(float(fallback_correct), used, reason, len(fin), True)
    right: dict[str, bool] = {}
    for a in fin:
        if a.key is not None:
            right[a.key] = right.get(a.key, False) or a.correct
    if sel.tie and tie_score == "expected":
        score = sum(right[k] for k in sel.tied) / len(sel.tied)
    else:
        score = float(right[sel.key])
    return ProblemReplay(score, used, reason, len(fin), False)


def draw(pool: Sequence[LoggedAttempt], n: int, how: str, rng: random.Random
         ) -> list[LoggedAttempt]:
    """n attempts from a problem's logged pool (module docstring: RESAMPLE)."""
    if how == "auto":
        how = "subset" if len(pool) > n else "bootstrap"
    if how == "none":
        return list(pool[:n])
    if how == "subset":
        if len(pool) < n:
            raise ConfigError(f"resample='subset' needs >= {n} logged attempts per problem; "
                              f"a problem has {len(pool)} (use bootstrap)")
        return rng.sample(list(pool), n)
    if how == "bootstrap":
        return [rng.choice(pool) for _ in range(n)]
    raise ConfigError(f"resample must be one of {RESAMPLE}; got {how!r}")


def replay_run(problems: Sequence[LoggedProblem], rule: ReplayRule, rng: random.Random, *,
               resample: str = "auto", tie_score: str = "expected"
               ) -> tuple[dict[str, ProblemReplay], float]:
    """One competition run over `problems` in the given order: ({id: outcome}, elapsed s)."""
    clock = SimClock()
    keeper = TimeKeeper(rule, clock)
    out: dict[str, ProblemReplay] = {}
    for p in problems:
        pt = keeper.begin()
        atts = draw(p.attempts, rule.num_attempts, resample, rng)
        res = replay_problem(atts, rule, pt.deadline - pt.start, p.fallback_correct, tie_score)
        clock.advance(res.used_s)
        keeper.end(pt)
        out[p.id] = res
    return out, keeper.elapsed()


# ---------------------------------------------------------------- the whole replay
@dataclass
class ReplayResult:
    rule: ReplayRule
    expected: float  # mean penalised score over repetitions
    low: float  # 2.5% quantile of one submission's penalised score
    high: float  # 97.5% quantile
    stderr: float  # Monte Carlo standard error of `expected`
    single_run: float  # mean score of one run (right answers, ties as fractions)
    time_mean_s: float  # mean elapsed time of a run
    time_max_s: float  # longest run
    early_stopped: float  # fraction of problems stopped by k_agree or runner_up
    deadline_hit: float  # fraction of problems stopped by their deadline
    fallbacks: float  # fraction of problems answered by the fallback
    problems: int  # problems per run
    scores: list[float] = field(default_factory=list)  # penalised score per repetition


def _quantile(xs: Sequence[float], q: float) -> float:
    ys = sorted(xs)
    pos = q * (len(ys) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ys[lo] + (ys[hi] - ys[lo]) * (pos - lo)


def replay(problems: Sequence[LoggedProblem], rule: ReplayRule, *, reps: int = 200,
           runs: int = 2, seed: int = 0, resample: str = "auto",
           tie_score: str = "expected", shuffle: bool = True) -> ReplayResult:
    """`reps` repetitions of `runs` runs each (module docstring)."""
    if tie_score not in TIE_SCORES:
        raise ConfigError(f"tie_score must be one of {TIE_SCORES}; got {tie_score!r}")
    if reps < 1 or runs < 1:
        raise ConfigError(f"reps and runs must be >= 1; got {reps}, {runs}")
    rng = random.Random(seed)
    scores, singles, times = [], [], []
    stops: dict[str, int] = {}
    fallbacks = total = 0
    for _ in range(reps):
        per_run = []
        for _run in range(runs):
            order = list(problems)
            if shuffle:
                rng.shuffle(order)
            res, elapsed = replay_run(order, rule, rng, resample=resample, tie_score=tie_score)
            per_run.append(res)
            times.append(elapsed)
            singles.append(sum(r.score for r in res.values()))
            for r in res.values():
                stops[r.stop_reason] = stops.get(r.stop_reason, 0) + 1
                fallbacks += r.fallback
                total += 1
        # per problem: the mean of its runs' scores is 1 / 0.5 / 0 for 0-1 scores, and the
        # expected penalised score for fractional (tie) scores of independent runs
        scores.append(sum(sum(run[p.id].score for run in per_run) / runs for p in problems))
    sd = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    return ReplayResult(
        rule=rule, expected=statistics.fmean(scores), low=_quantile(scores, 0.025),
        high=_quantile(scores, 0.975), stderr=sd / math.sqrt(len(scores)),
        single_run=statistics.fmean(singles), time_mean_s=statistics.fmean(times),
        time_max_s=max(times),
        early_stopped=(stops.get("k_agree", 0) + stops.get("runner_up", 0)) / total,
        deadline_hit=stops.get("deadline", 0) / total, fallbacks=fallbacks / total,
        problems=len(problems), scores=scores)


def format_table(results: Sequence[ReplayResult]) -> str:
    """The rules side by side (markdown)."""
    lines = [("| rule | expected score | 95% range | ± MC se | one run | time mean / max s "
              "| early stop | deadline | fallback |"), "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r.rule.name} | {r.expected:.2f} / {r.problems} | {r.low:.1f}-{r.high:.1f} | "
            f"{r.stderr:.2f} | {r.single_run:.2f} | "
            f"{r.time_mean_s:.0f} / {r.time_max_s:.0f} (of {r.rule.total_s:.0f}) | "
            f"{r.early_stopped:.0%} | {r.deadline_hit:.0%} | {r.fallbacks:.0%} |")
    return "\n".join(lines)


def budget_curve(problems: Sequence[LoggedProblem], rules: Sequence[ReplayRule],
                 budgets_s: Sequence[float], **kw: Any) -> dict[str, list[float]]:
    """Expected score of each rule at each total budget: {rule name: [score per budget]}."""
    from dataclasses import replace

    return {r.name: [replay(problems, replace(r, total_s=b), **kw).expected for b in budgets_s]
            for r in rules}


def plot_budget_curve(curve: dict[str, list[float]], budgets_s: Sequence[float],
                      path: str | Path, problems: int) -> Path:
    """A PNG of expected score against total time budget, one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, ys in curve.items():
        ax.plot(list(budgets_s), ys, marker="o", label=name)
    ax.set_xlabel("total time budget (s)")
    ax.set_ylabel(f"expected penalised score (of {problems})")
    ax.set_title("Replay: expected score against time budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
