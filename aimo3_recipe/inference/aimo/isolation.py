"""Errors count against the attempt they happen in, not the problem.

The solver runs a problem's attempts together (one `run_tir` call, each attempt a request in
the engine's running batch). Before this, any exception inside (vLLM refusing one request, a
sandbox that would not start, the grader tripping over one transcript) left `run_attempts`
and the solver answered the fallback, throwing away the attempts that had finished well.

Here, wrappers catch what they can pin on one attempt:
- the engine: a request the engine refuses (`submit`, or a batched `generate_tokens` retried
  prompt by prompt) ends that attempt at once with an empty turn; it is recognised afterwards
  by its context (prompt + tokens so far), recorded in `AttemptErrors.failed`;
- the sandbox: a session that fails to start or to run a cell gives that cell a failed
  result (the model sees "sandbox error: ..."), counted in `AttemptErrors.sandbox`.
`attempts.run_attempts` also guards the grader per attempt, and when the whole engine fails
(an error in `poll`, which no request owns) it keeps the attempts that had already ended and
marks the rest as errors. Each error is said once (notice) and counted in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aimo3_recipe.inference.engine import Completion, SamplingConfig, StreamingEngine
from aimo3_recipe.utils.code_execution import ExecResult
from aimo3_recipe.utils.notice import notice


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


@dataclass
class AttemptErrors:
    failed: dict[tuple[int, ...], str] = field(default_factory=dict)  # context -> error
    sandbox: int = 0  # cells whose sandbox failed (not the cell's own exception)

    def engine_error(self, context: list[int], e: BaseException) -> None:
        self.failed[tuple(context)] = describe(e)
        notice(f"aimo solver: the engine refused one attempt ({describe(e)[:200]}); that "
               "attempt ends as an error, the others go on")

    def error_of(self, prompt_ids: list[int], token_ids: list[int]) -> str | None:
        """The engine error that ended the attempt with this transcript, if one did."""
        return self.failed.get(tuple(prompt_ids) + tuple(token_ids))


def _empty() -> Completion:
    """An empty, finished turn: run_tir ends the attempt on it."""
    return Completion(text="", token_ids=[], logprobs=[], finish_reason="stop")


class IsolatingEngine:
    """An engine whose failed requests end their own attempt only (module docstring)."""

    def __init__(self, engine: Any, errors: AttemptErrors) -> None:
        self.engine, self.errors = engine, errors
        self.tokenizer = engine.tokenizer

    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]:
        try:
            return self.engine.generate_tokens(prompts, config)
        except Exception as e:  # noqa: BLE001 - pinned on its prompt below, counted
            if len(prompts) == 1:
                self.errors.engine_error(prompts[0], e)
                return [[_empty() for _ in range(config.n)]]
        return [self.generate_tokens([p], config)[0] for p in prompts]  # find the culprit

    def generate(self, prompts: list[str], config: SamplingConfig) -> list[list[Completion]]:
        return self.engine.generate(prompts, config)


class IsolatingStreamingEngine(IsolatingEngine):
    """The same for a streaming engine (vLLM): a refused `submit` ends that request."""

    def __init__(self, engine: Any, errors: AttemptErrors) -> None:
        super().__init__(engine, errors)
        self._refused: list[tuple[str, Completion]] = []

    def submit(self, request_id: str, prompt_ids: list[int], config: SamplingConfig) -> None:
        try:
            self.engine.submit(request_id, prompt_ids, config)
        except Exception as e:  # noqa: BLE001 - this request only: counted
            self.errors.engine_error(prompt_ids, e)
            self._refused.append((request_id, _empty()))

    def poll(self) -> list[tuple[str, Completion]]:
        done, self._refused = self._refused, []
        if self.engine.has_pending():
            done += self.engine.poll()
        return done

    def has_pending(self) -> bool:
        return bool(self._refused) or self.engine.has_pending()

    def cancel_pending(self) -> None:
        self._refused = []
        self.engine.cancel_pending()


def isolate(engine: Any, errors: AttemptErrors) -> IsolatingEngine:
    if isinstance(engine, StreamingEngine):
        return IsolatingStreamingEngine(engine, errors)
    return IsolatingEngine(engine, errors)


class _Session:
    def __init__(self, pool: IsolatingPool) -> None:
        self.pool = pool
        self.inner: Any = None
        try:
            self.inner = pool.pool.session()
        except Exception as e:  # noqa: BLE001 - every cell of it fails, counted
            self.start_error = describe(e)

    def run(self, code: str) -> ExecResult:
        try:
            if self.inner is None:
                raise RuntimeError(f"the sandbox session did not start ({self.start_error})")
            return self.inner.run(code)
        except Exception as e:  # noqa: BLE001 - the cell fails, the attempt goes on: counted
            self.pool.errors.sandbox += 1
            notice(f"aimo solver: sandbox failure ({describe(e)[:200]}); the cell counts as "
                   "failed, the attempt goes on")
            return ExecResult(output=f"sandbox error: {describe(e)}", ok=False,
                              error=describe(e))

    def interrupt(self) -> None:
        if self.inner is not None:
            self.inner.interrupt()

    def close(self, wait: bool = True) -> None:
        if self.inner is not None:
            self.inner.close(wait=wait)


class IsolatingPool:
    """A SandboxPool whose sessions never raise into run_tir (module docstring)."""

    def __init__(self, pool: Any, errors: AttemptErrors) -> None:
        self.pool, self.errors = pool, errors
        self.size = pool.size

    def session(self) -> _Session:
        return _Session(self)
