"""The competition solver: `AIMOSolver(config)`, and `predict_function(solver)`, the plain
function named `predict` that Kaggle's server takes.

Kaggle's `AIMO3InferenceServer(predict)` calls `predict(id_, problem)` once per problem with
one-row polars Series and wants a frame with `id` and `answer` back (polars or pandas). Its
`kaggle_evaluation.core.relay.define_server` accepts only plain functions (a bound method such
as `solver.predict` is refused: "Endpoint listeners passed to `serve` must be functions, got
<class 'method'>") and routes the gateway's "predict" calls by the function's `__name__`. The
server must start within 15 minutes, so the model is loaded lazily, on the first `predict`,
and that load is counted against the run's time like everything else.

Per problem: the time rule gives a budget and deadline (budget.py), N attempts run
concurrently with TIR and stop early (attempts.py), the shared selection layer chooses,
the answer is normalised to 0..99999 (answers.py; `fallback_answer`, counted, when no attempt
has a valid one), and one JSON line goes to `log_dir/problems.jsonl` (log.py). `close()`
writes `summary.json`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import FunctionType
from typing import Any

from aimo3_recipe.grader import modulus_from_problem
from aimo3_recipe.inference.aimo.attempts import AttemptsOutcome, choose, run_attempts
from aimo3_recipe.inference.aimo.budget import Clock, MonotonicClock, TimeKeeper, TimeRule
from aimo3_recipe.inference.aimo.config import SolverConfig
from aimo3_recipe.inference.aimo.log import ProblemRecord, append_record, summarise
from aimo3_recipe.inference.aimo.prompts import prompt_ids
from aimo3_recipe.inference.engine import Engine
from aimo3_recipe.utils.notice import notice

GENSELECT_MIN_S = 5.0  # GenSelect runs only with at least this long left before the deadline


def _scalar(x: Any) -> Any:
    """The one value of a one-row polars/pandas Series (or the value itself)."""
    if hasattr(x, "item") and hasattr(x, "__len__") and not isinstance(x, (str, bytes)):
        if len(x) != 1:
            raise ValueError(f"predict takes one problem at a time; got a Series of {len(x)}")
        if hasattr(x, "iloc"):  # pandas: .item() also works, iloc is explicit
            return x.iloc[0]
        return x.item(0) if "polars" in type(x).__module__ else x.item()
    return x


def answer_frame(id_: Any, answer: int, like: Any = None) -> Any:
    """A one-row frame with `id` and `answer`: polars when the input was polars (or pandas
    is missing), else pandas."""
    if like is not None and "polars" in type(like).__module__:
        import polars as pl

        return pl.DataFrame({"id": [id_], "answer": [answer]})
    try:
        import pandas as pd
    except ImportError:
        import polars as pl

        return pl.DataFrame({"id": [id_], "answer": [answer]})
    return pd.DataFrame({"id": [id_], "answer": [answer]})


def predict_function(solver: AIMOSolver) -> FunctionType:
    """A plain function named `predict` over `solver.predict`: what Kaggle's server accepts
    (gateway.check_endpoint states its rules). Kaggle's local gateway sends every column of
    the CSV, so with a reference file (`id,problem,answer`) a third Series arrives: columns
    after `problem` are ignored."""

    def predict(id_: Any, problem: Any, *_other_columns: Any) -> Any:
        return solver.predict(id_, problem)

    return predict


class AIMOSolver:
    """Build once per run (the run's clock starts here), then `predict` each problem."""

    def __init__(self, config: SolverConfig, engine: Engine | None = None, *,
                 clock: Clock | None = None, pool: Any = None) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.timer = TimeKeeper(TimeRule.of(config), self.clock)
        self._engine = engine
        self._pool = pool
        self._own_pool = False
        self.records: list[ProblemRecord] = []
        self.references: dict[str, int] = {}  # id -> right answer, for the log (local gateway)
        self.log_path = Path(config.log_dir) / "problems.jsonl" if config.log_dir else None

    # -- lazily built resources ----------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from aimo3_recipe.inference.engine import make_engine

            from aimo3_recipe.inference.vllm_config import vllm_config_of

            cfg = self.config
            self._engine = make_engine(cfg.model_name_or_path, cfg.use_vllm,
                                       seed=cfg.seed or 0, vllm_config=vllm_config_of(cfg))
        return self._engine

    @property
    def pool(self):
        if self._pool is None:
            from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool

            t = self.config.cell_timeout_s
            self._pool = SandboxPool(self.config.sandbox_sessions,
                                     SandboxConfig(timeout_s=t, cpu_s=t))
            self._own_pool = True
        return self._pool

    # -- Kaggle's interface --------------------------------------------------------------
    def predict(self, id_: Any, problem: Any) -> Any:
        """Kaggle's `predict(id_, problem)`: one-row Series (polars or pandas) or plain
        values in, a one-row frame with `id` and `answer` out."""
        pid, text = _scalar(id_), _scalar(problem)
        record = self.solve(str(text), str(pid))
        return answer_frame(pid, record.answer, like=problem)

    # -- one problem ---------------------------------------------------------------------
    def solve(self, problem: str, id_: str = "") -> ProblemRecord:
        cfg = self.config
        pt = self.timer.begin()
        modulus = modulus_from_problem(problem)
        outcome: AttemptsOutcome | None = None
        error = None
        if self.clock.now() < pt.deadline:
            try:
                engine = self.engine  # the first problem pays for loading the model
                ids = prompt_ids(cfg.prompt_format, engine.tokenizer, problem,
                                 cfg.reasoning_effort)
                outcome = run_attempts(engine, ids, problem, cfg, deadline=pt.deadline,
                                       clock=self.clock, pool=self.pool, modulus=modulus)
            except Exception as e:  # noqa: BLE001 - every problem must get an answer: counted
                error = f"{type(e).__name__}: {e}"
                notice(f"aimo solver: problem {id_!r} failed ({error}); answering the "
                       f"fallback {cfg.fallback_answer} (counted in summary.errors)")
        judge = None
        if (outcome is not None and cfg.selection == "genselect"
                and pt.deadline - self.clock.now() >= GENSELECT_MIN_S):
            from aimo3_recipe.inference.genselect import make_judge

            judge = make_judge(self.engine, problem, max_tokens=cfg.genselect_max_tokens,
                               seed=cfg.seed)
        if outcome is None:
            stop = "error" if error else "no_time"
            attempts, selection = [], {"reason": error or "no time left"}
            answer = None
        else:
            sel = choose(outcome, cfg, judge=judge)
            attempts, stop = outcome.attempts, outcome.stop_reason
            error = outcome.engine_error
            answer = int(sel.answer) if sel.answer is not None else None
            selection = {"strategy": sel.strategy, "reason": sel.reason, "votes": sel.votes,
                         "counts": sel.counts, "tie": sel.tie, "tied": sel.tied,
                         "fallback_to_majority": sel.fallback}
            if sel.genselect is not None:
                selection["genselect"] = {k: v for k, v in asdict(sel.genselect).items()
                                          if k != "judgments"}
        fallback = answer is None
        ref = self.references.get(str(id_))
        record = ProblemRecord(
            id=str(id_), problem=problem, order=pt.index,
            start_s=round(pt.start - self.timer.start, 4),
            budget_s=round(pt.budget_s, 4), time_left_s=round(pt.time_left_s, 4),
            problems_left=pt.problems_left, used_s=0.0,
            answer=cfg.fallback_answer if fallback else int(answer),  # type: ignore[arg-type]
            fallback=fallback, stop_reason=stop, selection=selection, modulus=modulus,
            attempts=attempts, reference=ref, error=error,
            sandbox_errors=0 if outcome is None else outcome.sandbox_errors)
        if ref is not None:
            record.correct = record.answer == ref
        record.used_s = round(self.timer.end(pt), 4)
        self.records.append(record)
        if self.log_path is not None:
            append_record(self.log_path, record)
        return record

    # -- end of run ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return summarise(self.records, self.config.total_s, self.timer.elapsed())

    def close(self) -> dict[str, Any]:
        """Write summary.json (with a log_dir), close the sandbox pool it opened; returns
        the summary. The engine is the caller's to close."""
        import json

        summary = self.summary()
        if self.config.log_dir:
            path = Path(self.config.log_dir) / "summary.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"summary": summary, "config": asdict(self.config)},
                                       indent=2, default=str))
        if self._own_pool and self._pool is not None:
            self._pool.close()
            self._pool = None
        return summary
