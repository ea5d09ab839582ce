"""An error in one attempt counts against that attempt only (issue 23 item 1, solver side).

Before, any exception inside `run_attempts` (vLLM refusing one request: "The decoder prompt
(length 512) plus the number of requested output tokens ... is longer than the maximum model
length", a sandbox that would not start, the grader) discarded every attempt of the problem
and the solver answered the fallback. The engines here are the scheduler tests' simulated
streaming engine with one fault added; the last test checks on real vLLM that the refusal is
raised at submit, for that request alone (the TIR side, which stops resubmitting an attempt at
the context window, is the 'tir' engineer's)."""

from __future__ import annotations

import pytest

from aimo3_recipe.inference.aimo import AIMOSolver, SimClock, SolverConfig
from aimo3_recipe.testing import ClockedScriptEngine as SimEngine
from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool


def boxed(answer, steps):
    return [(f"So the answer is \\boxed{{{answer}}}.", steps)]


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(size=2, config=SandboxConfig(timeout_s=60.0, cpu_s=60.0)) as p:
        yield p


def config(**kw) -> SolverConfig:
    base = dict(total_s=1000.0, num_problems=1, min_s=0.0, reserve_s=0.0, num_attempts=4,
                early_stop_k=0, early_stop_runner_up=False, max_tokens=200,
                selection="majority_vote", log_text=False, fallback_answer=0)
    base.update(kw)
    return SolverConfig(**base)


class RefusesOne(SimEngine):
    """vLLM refusing one request at submit (its prompt + output would pass the window)."""

    def submit(self, request_id, prompt_ids, config):
        if request_id.endswith("-2"):
            raise ValueError("The decoder prompt (length 512) plus the number of requested "
                             "output tokens (at least 1) is longer than the maximum model "
                             "length of 512")
        super().submit(request_id, prompt_ids, config)


def test_a_refused_attempt_does_not_zero_the_problem(pool):
    clock = SimClock()
    engine = RefusesOne(clock, {"P": [boxed(42, 2)] * 4})
    solver = AIMOSolver(config(), engine, clock=clock, pool=pool)
    rec = solver.solve("P: what is 42?", "p")
    assert (rec.answer, rec.fallback, rec.error) == (42, False, None)
    bad = rec.attempts[2]
    assert bad.finish_reason == "error" and bad.answer is None
    assert "maximum model length" in bad.error
    assert [a.answer for a in rec.attempts if a.index != 2] == [42, 42, 42]
    assert rec.selection["votes"] == {"42": 3.0}  # the three others voted, the error did not
    summary = solver.summary()
    assert summary["attempt_errors"] == 1 and summary["errors"] == 0
    assert summary["fallbacks"] == 0


def test_an_engine_failing_midway_keeps_the_attempts_that_ended(pool):
    class DiesLate(SimEngine):
        def poll(self):
            if self.polls >= 3:  # attempts 0 and 1 (2 steps) ended, 2 and 3 (6 steps) not
                raise RuntimeError("CUDA error: out of memory")
            return super().poll()

    clock = SimClock()
    plans = {"Q": [boxed(7, 2), boxed(7, 2), boxed(9, 6), boxed(9, 6)]}
    solver = AIMOSolver(config(), DiesLate(clock, plans), clock=clock, pool=pool)
    rec = solver.solve("Q: what is 7?", "q")
    assert (rec.answer, rec.fallback, rec.stop_reason) == (7, False, "error")
    assert "out of memory" in rec.error
    assert [a.finish_reason for a in rec.attempts] == ["stop", "stop", "error", "error"]


def test_a_grader_error_costs_its_attempt_only(pool, monkeypatch):
    from aimo3_recipe.inference.aimo import attempts as attempts_mod

    real = attempts_mod.normalise_answer

    def flaky(raw, problem=None, *, modulus=None):
        if raw == "13":
            raise RecursionError("maximum recursion depth exceeded in the parser")
        return real(raw, problem, modulus=modulus)

    monkeypatch.setattr(attempts_mod, "normalise_answer", flaky)
    clock = SimClock()
    plans = {"G": [boxed(5, 2), boxed(13, 2), boxed(5, 3), boxed(6, 3)]}
    rec = AIMOSolver(config(), SimEngine(clock, plans), clock=clock, pool=pool).solve(
        "G: what is 5?", "g")
    assert rec.answer == 5 and not rec.fallback
    assert rec.attempts[1].finish_reason == "error" and "grader" in rec.attempts[1].error


def test_a_sandbox_failure_fails_the_cell_not_the_problem():
    class NoSandbox:
        size = 2

        def session(self):
            raise OSError("cannot fork: resource temporarily unavailable")

    clock = SimClock()
    code = ("```python\nprint(6*7)\n```\n", 1)
    plans = {"SBX": [[code, ("\\boxed{42}", 1)]] * 2 + [boxed(42, 2)] * 2}
    solver = AIMOSolver(config(max_tool_calls=2), SimEngine(clock, plans), clock=clock,
                        pool=NoSandbox())
    rec = solver.solve("SBX: what is 6*7?", "s")
    assert rec.answer == 42 and not rec.fallback and rec.error is None
    assert rec.sandbox_errors == 2
    assert [a.tool_errors for a in rec.attempts[:2]] == [1, 1]
    assert solver.summary()["sandbox_errors"] == 2


@pytest.mark.vllm
@pytest.mark.slow
def test_real_vllm_refusal_is_pinned_on_its_request(vllm_engine):
    """vLLM raises its VLLMValidationError at submit (add_request), for the one request whose
    prompt fills the window, so the wrapper can end that request alone: the other request
    in the same batch still completes."""
    from aimo3_recipe.inference.aimo.isolation import AttemptErrors, isolate
    from aimo3_recipe.inference.engine import SamplingConfig

    errors = AttemptErrors()
    engine = isolate(vllm_engine, errors)
    ok = vllm_engine.encode("What is 2 + 3?")
    window = vllm_engine.llm.llm_engine.model_config.max_model_len
    too_long = (ok * (window // len(ok) + 1))[:window]
    cfg = SamplingConfig(max_tokens=8, temperature=1.0)
    engine.submit("tir-t-0", ok, cfg)
    engine.submit("tir-t-1", too_long, cfg)
    done = {}
    while engine.has_pending():
        done.update(engine.poll())
    assert done["tir-t-0"].token_ids and done["tir-t-1"].token_ids == []
    assert "maximum model length" in errors.error_of(too_long, [])
    assert errors.error_of(ok, done["tir-t-0"].token_ids) is None
