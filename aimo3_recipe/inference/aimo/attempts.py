"""One problem: N attempts run concurrently, stopped early, then one answer chosen.

`run_attempts` starts `num_attempts` TIR rollouts of one prompt through `run_tir` (with a
streaming engine, vLLM, each attempt is its own request in the running batch and runs its
python cells in its own sandbox session while the others decode). After every engine step
it looks at the attempts that ended and stops the rest (`run_tir`'s `should_stop`: requests
aborted in the engine, running cells killed) when
- "k_agree": `early_stop_k` valid answers agree;
- "runner_up": the runner-up answer cannot catch up even with every unfinished attempt
  (second + unfinished <= first), when `early_stop_runner_up`;
- "deadline": the clock passed the problem's deadline (budget.py), whatever the answers.
Otherwise it ends when every attempt has ("all_done"). The rules count valid answers only
(answers.py), in the order the attempts ended.

An error counts against its attempt only (isolation.py): a request the engine refuses, a
sandbox that fails or a grader error ends that attempt with `finish_reason` "error" (no
vote; the message in its record); when the engine itself fails mid-problem (stop "error"),
the attempts that had ended still vote, the rest are marked as errors.

`choose` then runs the shared selection layer (solution_selection.select) over the attempts
that finished, in the order they ended (so a tie goes to the answer reached first): majority,
entropy-weighted votes (1 / mean or median token entropy over the whole attempt or its last
`entropy_tail` tokens; exp(mean log-prob) where the engine gave no top-k), the vote-led
score, or GenSelect (only with time left before the deadline; else majority, said so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aimo3_recipe.grader import extract_answer
from aimo3_recipe.inference.aimo.answers import AIMOAnswer, normalise_answer
from aimo3_recipe.inference.aimo.budget import Clock
from aimo3_recipe.inference.aimo.config import SolverConfig
from aimo3_recipe.inference.aimo.isolation import (
    AttemptErrors,
    IsolatingPool,
    describe,
    isolate,
)
from aimo3_recipe.inference.aimo.log import AttemptRecord, entropy_stats
from aimo3_recipe.inference.aimo.prompts import tool_format_of
from aimo3_recipe.inference.engine import Engine, SamplingConfig
from aimo3_recipe.inference.finish_reason import FinishReason
from aimo3_recipe.inference.solution_selection import (
    Candidate,
    Selection,
    VoteScore,
    early_stop_reason,
    entropy_weight,
    mean_logprob_confidence,
    select,
)
from aimo3_recipe.inference.tir_executor import TIRConfig, TIRResult, run_tir
from aimo3_recipe.utils.code_execution import SandboxPool, default_pool
from aimo3_recipe.utils.notice import notice


def _same(answer: str) -> str:
    """Answers here are already canonical integers: the group key is the string itself."""
    return answer


def attempt_weight(entropies_T: Sequence[float] | None, mean_logprob: float | None, *,
                   tail: int = 0, reduce: str = "mean") -> float:
    """An attempt's vote weight: 1 / (mean or median entropy over its last `tail` tokens, all
    when 0) where token entropies exist, else exp(mean log-prob), else 1.0."""
    if entropies_T:
        return entropy_weight(entropies_T, tail=tail or None, reduce=reduce)
    return mean_logprob_confidence(mean_logprob)


@dataclass
class AttemptsOutcome:
    attempts: list[AttemptRecord]  # every attempt, in index order
    finish_order: list[int]  # indices of the attempts that ended (not cancelled), in order
    stop_reason: str  # k_agree | runner_up | deadline | all_done | error (the engine failed)
    results: list[TIRResult] = field(default_factory=list)  # the raw rollouts, index order
    sandbox_errors: int = 0  # cells whose sandbox failed (isolation.py)
    engine_error: str | None = None  # the engine failed for every attempt left (then: this)


def _record(i: int, r: TIRResult, answer: AIMOAnswer, time_s: float,
            cfg: SolverConfig, error: str | None = None) -> AttemptRecord:
    lps = r.model_logprobs
    mean_lp = sum(lps) / len(lps) if lps else None
    return AttemptRecord(
        index=i, answer=answer.value, answer_status=answer.status, raw_answer=answer.raw,
        finish_reason=FinishReason.ERROR if error else r.finish_reason, time_s=round(time_s, 4),
        tokens=r.num_model_tokens, error=error,
        tool_calls=r.num_code_calls, tool_errors=r.num_code_errors,
        tool_timeouts=r.num_timeouts, tool_seconds=round(r.tool_seconds, 4),
        mean_logprob=mean_lp,
        weight=attempt_weight(r.entropies, mean_lp, tail=cfg.entropy_tail,
                              reduce=cfg.entropy_reduce),
        entropy=entropy_stats(r.entropies), text=r.text if cfg.log_text else None)


def run_attempts(engine: Engine, prompt_ids: list[int], problem: str, cfg: SolverConfig, *,
                 deadline: float, clock: Clock, pool: SandboxPool | None = None,
                 modulus: int | None = None) -> AttemptsOutcome:
    """Run the attempts of one problem until every one ends or a stop rule fires (module
    docstring); times are measured on `clock` from the call. Errors count per attempt."""
    n = cfg.num_attempts
    t0 = clock.now()
    answers: dict[int, AIMOAnswer] = {}
    errors: dict[int, str] = {}  # attempt -> what failed in it
    ended: dict[int, TIRResult] = {}  # the attempts that ended, as should_stop saw them
    ended_at: dict[int, float] = {}
    order: list[int] = []
    state = {"reason": "all_done", "stopped_at": t0}
    caught = AttemptErrors()

    def answer_of(i: int, r: TIRResult) -> AIMOAnswer:
        failed = caught.error_of(r.prompt_ids, r.token_ids)
        if failed is not None:
            errors[i] = failed
            return AIMOAnswer(None, "none")
        try:
            return normalise_answer(extract_answer(r.model_text), problem, modulus=modulus)
        except Exception as e:  # noqa: BLE001 - the grader failed on this attempt only
            errors[i] = f"grader: {describe(e)}"
            notice(f"aimo solver: grading one attempt failed ({describe(e)[:200]}); it does "
                   "not vote, the others do")
            return AIMOAnswer(None, "none")

    def should_stop(just_ended: list[tuple[int, TIRResult]]) -> bool:
        now = clock.now()
        for i, r in just_ended:
            answers[i], ended[i], ended_at[i] = answer_of(i, r), r, now - t0
            order.append(i)
        if len(order) == n:
            return False  # nothing left to cancel: run_tir ends by itself
        voting = [str(answers[i].value) if answers[i].valid else None for i in order]
        reason = early_stop_reason(voting, n - len(order), k=cfg.early_stop_k or None,
                                   runner_up=cfg.early_stop_runner_up, key=_same)
        if reason is None and now >= deadline:
            reason = "deadline"
        if reason is None:
            return False
        state["reason"], state["stopped_at"] = reason, now
        return True

    sampling = SamplingConfig(n=n, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_tokens=cfg.max_tokens, seed=cfg.seed, logprobs=True,
                              top_logprobs=cfg.top_logprobs)
    tir = TIRConfig(max_tool_calls=cfg.max_tool_calls, max_new_tokens=cfg.max_tokens,
                    tool_format=tool_format_of(cfg.prompt_format))
    guarded_pool = IsolatingPool(pool or default_pool(tir.sandbox), caught)
    engine_error = None
    try:
        results = run_tir(isolate(engine, caught), [prompt_ids], sampling, tir, guarded_pool,
                          should_stop=should_stop)[0]
    except Exception as e:  # noqa: BLE001 - the engine failed for all: keep what had ended
        engine_error = describe(e)
        notice(f"aimo solver: the engine failed mid-problem ({engine_error[:200]}); the "
               f"{len(order)} attempts that had ended still vote, the rest count as errors")
        results = [ended.get(i) or TIRResult(text="", segments=[], finish_reason=FinishReason.ERROR,
                                             prompt_ids=list(prompt_ids)) for i in range(n)]
        for i in range(n):
            if i not in ended:
                errors.setdefault(i, engine_error)
        state["reason"], state["stopped_at"] = "error", clock.now()
    records = []
    for i, r in enumerate(results):
        if i in answers:
            records.append(_record(i, r, answers[i], ended_at[i], cfg, errors.get(i)))
        elif i in errors:  # the engine failed before this attempt ended
            records.append(_record(i, r, AIMOAnswer(None, "none"),
                                   state["stopped_at"] - t0, cfg, errors[i]))
        else:  # cancelled: its partial answer (if any) and the time of the cancel
            records.append(_record(i, r, answer_of(i, r), state["stopped_at"] - t0, cfg,
                                   errors.get(i)))
    finished = [i for i in order if not records[i].cancelled and i not in errors]
    return AttemptsOutcome(records, finished, str(state["reason"]), list(results),
                           sandbox_errors=caught.sandbox, engine_error=engine_error)


def choose(outcome: AttemptsOutcome, cfg: SolverConfig, *, judge=None) -> Selection:
    """One answer among the finished attempts, by `cfg.selection` (module docstring).
    `judge`: GenSelect's (genselect.make_judge); without one, genselect falls back to majority."""
    cands = []
    for i in outcome.finish_order:
        a = outcome.attempts[i]
        text = outcome.results[i].model_text if outcome.results else (a.text or "")
        cands.append(Candidate(answer=None if a.answer is None else str(a.answer), text=text,
                               mean_logprob=a.mean_logprob, score=a.weight,
                               finish_reason=a.finish_reason))
    strategy = cfg.selection
    if strategy == "genselect" and judge is None:
        sel = select("majority_vote", cands, key=_same)
        sel.reason = f"genselect skipped (no time left): {sel.reason}"
        return sel
    return select(strategy, cands, judge=judge, key=_same,
                  vote_score=VoteScore(cfg.vote_confidence, cfg.vote_consensus))
