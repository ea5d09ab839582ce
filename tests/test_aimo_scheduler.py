"""The AIMO solver's scheduling on a simulated clock: banking, the hard stop, both early-stop
rules, no consensus, the total never exceeded, problems in any order, cancelled attempts in
the engine and in the log. No real sleeping: the scripted engine advances a `SimClock` by
`step_s` per decode step, and each attempt takes a scripted number of steps."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from aimo3_recipe.inference.aimo import AIMOSolver, SimClock, SolverConfig, TimeRule
from aimo3_recipe.inference.aimo.budget import problem_budget
from aimo3_recipe.testing import ClockedScriptEngine as SimEngine
from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool


def boxed(answer: int | str, steps: int) -> list[tuple[str, int]]:
    return [(f"So the answer is \\boxed{{{answer}}}.", steps)]


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(size=2, config=SandboxConfig(timeout_s=60.0, cpu_s=60.0)) as p:
        yield p


def make_solver(clock, plans, pool, step_s=1.0, real_sleep_s=0.0,
                **overrides) -> tuple[AIMOSolver, SimEngine]:
    base = {"total_s": 1000.0, "num_problems": 3, "reserve_s": 0.0, "min_s": 0.0,
            "max_s": 1000.0, "hard_reserve_s": 1.0, "stop_margin_s": 1.0, "num_attempts": 8,
            "early_stop_k": 4, "early_stop_runner_up": False, "max_tokens": 200,
            "top_logprobs": 2, "selection": "majority_vote", "log_text": False}
    base.update(overrides)
    engine = SimEngine(clock, plans, step_s, real_sleep_s)
    return AIMOSolver(SolverConfig(**base), engine, clock=clock, pool=pool), engine


# ---------------------------------------------------------------- the time rule by hand
def test_problem_budget_public_rule_by_hand():
    rule = TimeRule()  # 17,400 s, reserve 300, 300..900, hard reserve 10
    assert problem_budget(17400, 50, rule) == 900  # 17400 - 49*300 = 2700 -> ceiling 900
    assert problem_budget(3000, 10, rule) == 300  # 3000 - 2700 = 300
    assert problem_budget(2900, 10, rule) == 300  # 200 -> floor 300 (hard: 2900 - 90 = 2810)
    assert problem_budget(400, 10, rule) == 300  # floor 300, within the hard stop's 310
    assert problem_budget(200, 10, rule) == 110  # floor 300 cut by the hard stop: 200 - 90
    assert problem_budget(100, 10, rule) == 10  # hard: 100 - 90
    assert problem_budget(50, 10, rule) == 0  # nothing left beyond the others' reserve
    assert problem_budget(500, 1, rule) == 500  # the last problem may take all that is left
    assert problem_budget(500, 0, rule) == 500  # more problems than planned: as if the last


def test_time_rule_rejects_bad_values():
    with pytest.raises(ValueError, match="min_s"):
        TimeRule(min_s=10, max_s=5)
    with pytest.raises(ValueError, match="total_s"):
        TimeRule(total_s=0)


# ---------------------------------------------------------------- early stopping
def test_early_stop_at_k_cancels_the_rest_in_the_engine(pool):
    clock = SimClock()
    plan = [boxed(7, s) for s in (10, 12, 14, 16)] + [boxed(9, 100)] * 4
    solver, engine = make_solver(clock, {"P-k": plan}, pool)
    rec = solver.solve("P-k: what is 7?", "a")
    assert rec.answer == 7 and rec.stop_reason == "k_agree" and not rec.fallback
    assert rec.used_s == pytest.approx(16.0)  # the 4th agreeing attempt ends at step 16
    assert sorted(engine.cancelled) == sorted(engine.submitted[4:])  # aborted in the engine
    cancelled = [a for a in rec.attempts if a.cancelled]
    assert [a.index for a in cancelled] == [4, 5, 6, 7]
    assert all(a.time_s == pytest.approx(16.0) and a.answer is None for a in cancelled)
    assert [a.time_s for a in rec.attempts[:4]] == [10.0, 12.0, 14.0, 16.0]
    assert rec.selection["counts"] == {"7": 4}


def test_early_stop_when_the_runner_up_cannot_catch_up(pool):
    clock = SimClock()
    # 5 attempts: 5 @5, 6 @6, 5 @7, 5 @8, one slow. After step 8: first 3, second 1, one left:
    # 1 + 1 <= 3 -> stop, although K = 4 was never reached
    plan = [boxed(5, 5), boxed(6, 6), boxed(5, 7), boxed(5, 8), boxed(6, 50)]
    solver, engine = make_solver(clock, {"P-r": plan}, pool, num_attempts=5,
                                 early_stop_runner_up=True)
    rec = solver.solve("P-r: a problem", "r")
    assert rec.stop_reason == "runner_up" and rec.answer == 5
    assert rec.used_s == pytest.approx(8.0) and len(engine.cancelled) == 1
    # at step 7 (first 2, second 1, two left: 1 + 2 > 2) it had not stopped
    assert rec.attempts[3].time_s == 8.0 and not rec.attempts[3].cancelled


def test_runner_up_rule_off_waits_for_k(pool):
    clock = SimClock()
    plan = [boxed(5, 5), boxed(6, 6), boxed(5, 7), boxed(5, 8), boxed(6, 50)]
    solver, _ = make_solver(clock, {"P-r": plan}, pool, num_attempts=5)
    rec = solver.solve("P-r: a problem", "r")
    assert rec.stop_reason == "all_done" and rec.used_s == pytest.approx(50.0)


def test_no_consensus_runs_all_and_breaks_the_tie_by_first_finished(pool):
    clock = SimClock()
    plan = [boxed(10 + i, 20 - i) for i in range(4)]  # attempt 3 finishes first (step 17)
    solver, engine = make_solver(clock, {"P-n": plan}, pool, num_attempts=4,
                                 early_stop_runner_up=True)
    rec = solver.solve("P-n: hard", "n")
    assert rec.stop_reason == "all_done" and engine.cancelled == []
    assert rec.answer == 13 and rec.selection["tie"] is True  # first to finish: attempt 3
    assert rec.used_s == pytest.approx(20.0) and not rec.fallback


def test_no_valid_answer_falls_back_and_is_counted(pool):
    clock = SimClock()
    plan = [[("I give up.", 3)], boxed("3/2", 4), boxed(123456, 5)]
    solver, _ = make_solver(clock, {"P-f": plan}, pool, num_attempts=3, fallback_answer=0)
    rec = solver.solve("P-f: no answer", "f")
    assert rec.fallback and rec.answer == 0
    assert [a.answer_status for a in rec.attempts] == ["none", "not_integer", "out_of_range"]
    assert solver.summary()["fallbacks"] == 1


# ---------------------------------------------------------------- time: bank, hard stop
def test_unused_time_is_banked_for_later_problems(pool):
    clock = SimClock()
    plans = {"P1": [boxed(1, 4)] * 4 + [boxed(2, 99)] * 4, "P2": [boxed(2, 1000)] * 8,
             "P3": [boxed(3, 2)] * 8}
    solver, _ = make_solver(clock, plans, pool, total_s=100.0, num_problems=3, reserve_s=20.0,
                            min_s=5.0, max_s=1000.0, hard_reserve_s=1.0, stop_margin_s=1.0)
    r1 = solver.solve("P1 ...", "1")
    # time_left 100, 3 left: clamp(100 - 2*20, 5, 1000) = 60; it used 4 s (4 agreed)
    assert r1.budget_s == 60.0 and r1.used_s == 4.0 and r1.stop_reason == "k_agree"
    r2 = solver.solve("P2 ...", "2")
    # banked 56 s: time_left 96, 2 left: 96 - 20 = 76 (had P1 used its 60 s: 40 - 20 = 20)
    assert r2.budget_s == 76.0 and solver.timer.banked_s == pytest.approx(56.0 + 76 - r2.used_s)
    assert r2.stop_reason == "deadline" and r2.used_s <= r2.budget_s
    assert all(a.cancelled for a in r2.attempts)
    r3 = solver.solve("P3 ...", "3")
    assert r3.budget_s == pytest.approx(100 - 4 - r2.used_s)  # the last one gets all left
    assert solver.timer.elapsed() <= 100.0


def test_hard_stop_leaves_time_for_the_remaining_problems(pool):
    clock = SimClock()
    plans = {f"H{i}": [boxed(i, 10_000)] * 8 for i in range(3)}  # never finish in time
    solver, _ = make_solver(clock, plans, pool, step_s=0.5, total_s=30.0, num_problems=3,
                            reserve_s=0.0, min_s=20.0, max_s=100.0, hard_reserve_s=5.0,
                            stop_margin_s=1.0)
    recs = [solver.solve(f"H{i} problem", str(i)) for i in range(3)]
    # 1st: clamp(30, 20, 100) = 30, hard stop 30 - 2*5 = 20; stopped at 20 - 1 (margin) = 19.
    # 2nd: 11 s left: the floor says 20, the hard stop 11 - 5 = 6; used 5. 3rd: all 6 left.
    assert [r.budget_s for r in recs] == [20.0, 6.0, 6.0]
    assert [r.used_s for r in recs] == [19.0, 5.0, 5.0]
    assert all(r.stop_reason == "deadline" and r.fallback for r in recs)
    assert all(r.used_s <= r.budget_s for r in recs)
    assert solver.timer.elapsed() <= 30.0


def test_no_time_left_answers_without_starting_attempts(pool):
    clock = SimClock()
    solver, engine = make_solver(clock, {"Z": [boxed(1, 1)] * 8}, pool, total_s=10.0,
                                 num_problems=2, hard_reserve_s=10.0)
    rec = solver.solve("Z late", "z")
    assert rec.stop_reason == "no_time" and rec.fallback and engine.submitted == []
    assert rec.answer == 0 and rec.attempts == []


@pytest.mark.parametrize("seed", range(4))
def test_total_never_exceeds_the_budget_in_any_order(pool, seed):
    rng = random.Random(seed)
    n = 6
    plans = {f"Q{j}:": [boxed(rng.choice([j, j + 1, 99999, 100000]), rng.randint(1, 400))
                        for _ in range(8)] for j in range(n)}
    total = rng.uniform(100, 600)
    clock = SimClock()
    solver, _ = make_solver(clock, plans, pool, step_s=rng.choice([0.5, 1.0]), total_s=total,
                            num_problems=n, reserve_s=rng.uniform(0, 60),
                            min_s=rng.uniform(0, 30), max_s=rng.uniform(60, 300),
                            hard_reserve_s=2.0, stop_margin_s=1.0,
                            early_stop_runner_up=bool(seed % 2))
    order = list(range(n))
    rng.shuffle(order)
    recs = [solver.solve(f"Q{j}: problem {j}", str(j)) for j in order]
    assert solver.timer.elapsed() <= total
    assert sum(r.used_s for r in recs) <= total + 1e-9
    assert all(0 <= r.answer <= 99999 for r in recs)
    assert all(r.used_s <= r.budget_s + 1e-9 for r in recs)


def test_answers_do_not_depend_on_the_order_with_time_to_spare(pool):
    plans = {f"O{j}:": [boxed(j * 11 + (i % 3 == 0), 5 + 3 * i) for i in range(8)]
             for j in range(4)}
    answers = []
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]):
        clock = SimClock()
        solver, _ = make_solver(clock, plans, pool, num_problems=4)
        got = {j: solver.solve(f"O{j}: problem", str(j)).answer for j in order}
        answers.append(got)
    assert answers[0] == answers[1] == answers[2]
    assert answers[0] == {j: j * 11 for j in range(4)}


# ---------------------------------------------------------------- the log
def test_jsonl_log_keeps_every_attempt_and_a_summary(pool, tmp_path):
    clock = SimClock()
    plans = {"L1": [boxed(4, s) for s in (3, 4, 5, 6, 50, 60, 70, 80)],
             "L2": [boxed(8, 9)] * 8}
    solver, _ = make_solver(clock, plans, pool, log_dir=str(tmp_path), log_text=True,
                            selection="weighted_vote", num_problems=2)
    solver.solve("L1 problem", "p1")
    solver.solve("L2 problem", "p2")
    summary = solver.close()
    lines = [json.loads(x) for x in (tmp_path / "problems.jsonl").read_text().splitlines()]
    assert [d["id"] for d in lines] == ["p1", "p2"]
    first = lines[0]
    assert len(first["attempts"]) == 8 and first["num_cancelled"] == 4
    for a in first["attempts"]:
        assert {"answer", "answer_status", "finish_reason", "time_s", "tokens", "tool_calls",
                "weight", "entropy", "text"} <= set(a)
    # top-2 log-probs (-0.1, -2.5) on every token: entropy by hand
    p = [1 / (1 + math.exp(-2.4)), math.exp(-2.4) / (1 + math.exp(-2.4))]
    h = -sum(x * math.log(x) for x in p)
    assert first["attempts"][0]["entropy"]["mean"] == pytest.approx(h, abs=1e-5)
    assert first["attempts"][0]["weight"] == pytest.approx(1 / h)
    assert first["stop_reason"] == "k_agree" and first["selection"]["strategy"] == "weighted_vote"
    saved = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert saved == summary
    assert summary["problems"] == 2 and summary["attempts"] == 16
    assert summary["attempts_cancelled"] == 4 + 0 and summary["answers_valid"] == 2
    assert summary["within_budget"] is True


# ---------------------------------------------------------------- predict's signature
def test_predict_takes_and_returns_kaggle_frames(pool):
    import pandas as pd

    clock = SimClock()
    solver, _ = make_solver(clock, {"K1": [boxed(42, 2)] * 8}, pool)
    out = solver.predict(pd.Series(["id-1"], name="id"), pd.Series(["K1 q"], name="problem"))
    assert list(out.columns) == ["id", "answer"] and out.to_dict("records") == [
        {"id": "id-1", "answer": 42}]
    pl = pytest.importorskip("polars")
    out = solver.predict(pl.Series("id", ["id-2"]), pl.Series("problem", ["K1 q"]))
    assert isinstance(out, pl.DataFrame) and out.to_dicts() == [{"id": "id-2", "answer": 42}]


# ---------------------------------------------------------------- real cells, cancelled
def test_cancel_kills_running_cells_of_other_attempts(pool):
    """Attempt 0 answers; attempts 1-2 are inside a 60 s cell: with K=1 they are cancelled
    and their cells killed, so the problem ends in well under the cell timeout."""
    clock = SimClock()
    sleeper = [("```python\nimport time\ntime.sleep(60)\n```\n", 1), ("never", 1)]
    plan = [boxed(3, 40), sleeper, sleeper]
    solver, _ = make_solver(clock, {"C1": plan}, pool, num_attempts=3, early_stop_k=1,
                            step_s=0.01, real_sleep_s=0.05, log_text=True)
    t0 = time.monotonic()
    rec = solver.solve("C1 problem", "c")
    assert time.monotonic() - t0 < 20.0  # 40 steps = 2 s; the cells alone would take 60 s
    assert rec.answer == 3 and rec.stop_reason == "k_agree"
    assert [a.finish_reason for a in rec.attempts] == ["stop", "cancelled", "cancelled"]
    assert rec.attempts[1].text.startswith("```python")  # the partial transcript is kept
    assert pool.open_sessions == 0  # the cancelled attempts' sessions were closed


def test_early_stop_with_a_round_based_engine(pool):
    """Engines without streaming (transformers) run TIR in rounds: the stop rules are checked
    after each round, and the attempts still going are cancelled before the next one."""
    from aimo3_recipe.testing import CharTokenizer, ReplyEngine

    def reply(prompt, j, call):
        if j < 4:
            return "\\boxed{4}", -0.1
        return "```python\nprint(1)\n```\n", -0.1  # wants another round after its cell

    engine = ReplyEngine(CharTokenizer(), reply)
    clock = SimClock()
    cfg = SolverConfig(total_s=100.0, num_problems=1, num_attempts=8, early_stop_k=4,
                       max_tokens=100, selection="majority_vote", log_text=False)
    rec = AIMOSolver(cfg, engine, clock=clock, pool=pool).solve("R: what is 4?", "r")
    assert rec.answer == 4 and rec.stop_reason == "k_agree" and engine.calls == 1
    assert [a.finish_reason for a in rec.attempts] == ["stop"] * 4 + ["cancelled"] * 4
    assert all(a.tool_calls == 1 for a in rec.attempts[4:])  # their round-0 cells had run


def test_an_engine_error_answers_the_fallback_and_is_counted(pool):
    class Broken(SimEngine):
        def poll(self):
            raise RuntimeError("CUDA error: device-side assert")

    clock = SimClock()
    engine = Broken(clock, {"E": [boxed(1, 1)] * 8})
    solver = AIMOSolver(SolverConfig(total_s=100.0, num_problems=2, fallback_answer=7),
                        engine, clock=clock, pool=pool)
    rec = solver.solve("E problem", "e")
    assert (rec.answer, rec.fallback, rec.stop_reason) == (7, True, "error")
    assert "device-side assert" in rec.error and engine.pending == {}  # cancelled on error
    assert solver.summary()["errors"] == 1
    with pytest.raises(KeyboardInterrupt):  # a kill is not swallowed
        class Killed(SimEngine):
            def poll(self):
                raise KeyboardInterrupt

        AIMOSolver(SolverConfig(total_s=100.0, num_problems=1),
                   Killed(clock, {"E": [boxed(1, 1)] * 8}),
                   clock=clock, pool=pool).solve("E problem", "k")
