"""The replay simulator: the analytic majority-vote score on a synthetic log, the right
ranking of two rules under a tight budget, agreement with an evaluation's maj@8 and with
the solver's own run, rule parsing, the table, the plot and the CLI."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from aimo3_recipe.inference.aimo import SimClock, SolverConfig
from aimo3_recipe.inference.aimo.replay import (
    LoggedAttempt,
    LoggedProblem,
    ReplayRule,
    budget_curve,
    format_table,
    load_logs,
    parse_rule,
    plot_budget_curve,
    replay,
    replay_problem,
)

LOOSE = {"total_s": 1e9, "reserve_s": 0.0, "min_s": 0.0, "max_s": 1e9}  # no time pressure


def synthetic(num_problems: int = 50, pool: int = 100, p: float = 0.7, seed: int = 0,
              times: tuple[float, float] = (10.0, 100.0)) -> list[LoggedProblem]:
    """Independent attempts: exactly round(p * pool) of each pool right (answer "1"), the
    rest answer "2"; times uniform. Bootstrap draws from it are Bernoulli(p) exactly."""
    rng = random.Random(seed)
    probs = []
    for j in range(num_problems):
        right = round(p * pool)
        atts = [LoggedAttempt("1" if i < right else "2", i < right, rng.uniform(*times))
                for i in range(pool)]
        rng.shuffle(atts)
        probs.append(LoggedProblem(f"q{j}", atts))
    return probs


def analytic_majority(p: float, n: int) -> float:
    """P(majority of n right) with one wrong answer, a tie scoring 1/2."""
    pmf = [math.comb(n, x) * p ** x * (1 - p) ** (n - x) for x in range(n + 1)]
    win = sum(pmf[x] for x in range(n + 1) if 2 * x > n)
    return win + (0.5 * pmf[n // 2] if n % 2 == 0 else 0.0)


def test_replay_reproduces_the_analytic_majority_score():
    probs = synthetic()
    rule = ReplayRule(num_attempts=8, early_stop_k=0, num_problems=50, **LOOSE)
    res = replay(probs, rule, reps=300, resample="bootstrap", seed=1)
    expected = 50 * analytic_majority(0.7, 8)  # 43.70
    assert expected == pytest.approx(43.70, abs=0.01)
    assert res.low <= expected <= res.high
    assert abs(res.expected - expected) < 4 * res.stderr + 0.05
    assert res.early_stopped == 0 and res.deadline_hit == 0


def test_replay_ranks_early_stop_above_no_stop_under_a_tight_budget():
    probs = synthetic(times=(20.0, 400.0), seed=2)
    tight = {"total_s": 50 * 150.0, "num_problems": 50, "reserve_s": 100.0, "min_s": 30.0,
             "max_s": 600.0, "hard_reserve_s": 5.0}
    k4 = replay(probs, ReplayRule(name="k4", early_stop_k=4, **tight), reps=60, seed=3)
    none = replay(probs, ReplayRule(name="no stop", early_stop_k=0, **tight), reps=60, seed=3)
    assert k4.expected > none.expected + 3 * (k4.stderr + none.stderr)
    assert none.deadline_hit > k4.deadline_hit
    assert max(k4.time_max_s, none.time_max_s) <= tight["total_s"]
    # with all the time in the world the two rules are close (k=4 of 8 rarely misleads at 0.7)
    free_k4 = replay(probs, replace(k4.rule, **LOOSE), reps=30, seed=4)
    free_none = replay(probs, replace(none.rule, **LOOSE), reps=30, seed=4)
    assert abs(free_k4.expected - free_none.expected) < 2.0


def test_replay_problem_by_hand():
    a = [LoggedAttempt("5", True, 10), LoggedAttempt("6", False, 20),
         LoggedAttempt("5", True, 30), LoggedAttempt("6", False, 40)]
    rule = ReplayRule(num_attempts=4, early_stop_k=2, **LOOSE)
    r = replay_problem(a, rule, deadline_s=1e9)
    assert (r.score, r.used_s, r.stop_reason, r.finished) == (1.0, 30.0, "k_agree", 3)
    r = replay_problem(a, replace(rule, early_stop_k=0), deadline_s=1e9)
    assert (r.score, r.used_s, r.stop_reason) == (0.5, 40.0, "all_done")  # 2-2 tie: expected
    r = replay_problem(a, replace(rule, early_stop_k=0), deadline_s=1e9, tie_score="first_seen")
    assert r.score == 1.0  # "5" finished first
    r = replay_problem(a, replace(rule, early_stop_k=0), deadline_s=25)
    assert (r.score, r.used_s, r.stop_reason, r.finished) == (0.5, 25, "deadline", 2)
    r = replay_problem(a, rule, deadline_s=5, fallback_correct=True)
    assert (r.score, r.fallback, r.stop_reason) == (1.0, True, "deadline")
    # weighted: the confident wrong attempt wins the 1-1 vote at the deadline
    w = [replace(a[0], weight=1.0), replace(a[1], weight=3.0)]
    r = replay_problem(w, replace(rule, selection="weighted_vote", num_attempts=2), 1e9)
    assert r.score == 0.0


def test_confidence_rules_read_the_logged_entropy():
    a = [LoggedAttempt("5", True, 1, entropy={"tail256_mean": 0.1, "mean": 2.0}),
         LoggedAttempt("6", False, 2, entropy={"tail256_mean": 1.0, "mean": 0.5})]
    rule = ReplayRule(num_attempts=2, early_stop_k=0, selection="weighted_vote", **LOOSE)
    assert replay_problem(a, replace(rule, confidence="entropy_tail256_mean"), 1e9).score == 1
    assert replay_problem(a, replace(rule, confidence="entropy_mean"), 1e9).score == 0


def test_parse_rule_and_table_and_plot(tmp_path):
    r = parse_rule("k4:early_stop_k=4,early_stop_runner_up=true,total_s=3000", num_problems=10)
    assert (r.name, r.early_stop_k, r.early_stop_runner_up, r.total_s, r.num_problems) == (
        "k4", 4, True, 3000.0, 10)
    with pytest.raises(ValueError, match="early_stop"):
        parse_rule("x:early_stop=4")
    with pytest.raises(ValueError, match="GenSelect"):
        parse_rule("g:selection=genselect")
    probs = synthetic(num_problems=10, pool=20)
    res = replay(probs, replace(r, **{**LOOSE, "total_s": 3000.0}), reps=5)
    table = format_table([res])
    assert table.splitlines()[0].startswith("| rule | expected score")
    assert "| k4 |" in table and "/ 10 |" in table
    budgets = [300.0, 1000.0, 3000.0]
    curve = budget_curve(probs, [r], budgets, reps=5)
    assert len(curve["k4"]) == 3 and curve["k4"][0] <= curve["k4"][2] + 1.0
    png = plot_budget_curve(curve, budgets, tmp_path / "curve.png", problems=10)
    assert png.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- real logs
def _eval_then_replay(tmp_path: Path, engine, benchmark: Path) -> tuple[float, float]:
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import main

    out = tmp_path / "eval"
    res = main(EvalConfig(benchmark=str(benchmark), strategy="majority_vote", num_samples=8,
                          batch_size=4, output_dir=str(out), progress=False,
                          include_greedy=False, bootstrap_resamples=20, max_new_tokens=256,
                          temperature=0.7), engine=engine)
    probs = load_logs([out / "samples.jsonl"])
    rule = ReplayRule(num_attempts=8, early_stop_k=0, num_problems=len(probs), **LOOSE)
    rep = replay(probs, rule, reps=1, runs=1, resample="none", shuffle=False)
    return rep.single_run / len(probs), res["metrics"]["sampled"]["maj@8"]


def _bench(tmp_path: Path) -> Path:
    from aimo3_recipe.data.synthetic import generate_synthetic

    path = tmp_path / "bench.jsonl"
    with path.open("w") as f:
        for r in generate_synthetic(12, seed=5, kinds=["arithmetic", "gcd_lcm"]):
            f.write(json.dumps({"problem": r.problem, "solution": "", "answer": r.answer}) + "\n")
    return path


def test_replay_of_majority_of_8_equals_the_evaluations_maj8(tmp_path, tiny_tokenizer):
    from aimo3_recipe.testing import RandomAnswerEngine

    bench = tmp_path / "bench.jsonl"
    with bench.open("w") as f:
        for i in range(12):
            f.write(json.dumps({"problem": f"What is {i % 4} + 0?", "solution": "",
                                "answer": str(i % 4)}) + "\n")
    replayed, maj8 = _eval_then_replay(tmp_path, RandomAnswerEngine(tiny_tokenizer), bench)
    assert 0 < maj8 < 1 and replayed == pytest.approx(maj8)


@pytest.mark.slow
@pytest.mark.vllm
def test_replay_equals_maj8_of_the_embedded_default_on_vllm(tmp_path, vllm_engine):
    replayed, maj8 = _eval_then_replay(tmp_path, vllm_engine, _bench(tmp_path))
    print(f"\nembedded default SC@8 on 12 generated problems: maj@8 {maj8:.4f}, "
          f"replay {replayed:.4f}")
    assert replayed == pytest.approx(maj8)


def test_replay_of_a_solver_log_matches_the_solvers_own_run(tmp_path):
    from aimo3_recipe.inference.aimo.solver import AIMOSolver
    from aimo3_recipe.testing import ClockedScriptEngine

    rng = random.Random(0)
    plans = {f"S{j}:": [[(f"\\boxed{{{rng.choice([j, j, j + 1])}}}", rng.randint(1, 60))]
                        for _ in range(8)] for j in range(6)}
    clock = SimClock()
    cfg = SolverConfig(total_s=200.0, num_problems=6, reserve_s=10.0, min_s=5.0, max_s=80.0,
                       hard_reserve_s=1.0, stop_margin_s=1.0, num_attempts=8, early_stop_k=4,
                       early_stop_runner_up=True, selection="majority_vote", max_tokens=50,
                       log_dir=str(tmp_path), log_text=False)
    solver = AIMOSolver(cfg, ClockedScriptEngine(clock, plans), clock=clock)
    solver.references = {str(j): j for j in range(6)}
    recs = [solver.solve(f"S{j}: problem", str(j)) for j in range(6)]
    solver.close()
    probs = load_logs([tmp_path / "problems.jsonl"])
    rule = ReplayRule(total_s=200.0, num_problems=6, reserve_s=10.0, min_s=5.0, max_s=80.0,
                      hard_reserve_s=1.0, stop_margin_s=1.0, num_attempts=8, early_stop_k=4,
                      early_stop_runner_up=True, confidence="weight")
    rep = replay(probs, rule, reps=1, runs=1, resample="none", shuffle=False,
                 tie_score="first_seen")
    assert rep.single_run == sum(r.correct for r in recs)
    assert rep.time_mean_s == pytest.approx(sum(r.used_s for r in recs))


def test_cli_replay_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    from aimo3_recipe.cli import main

    log = tmp_path / "problems.jsonl"
    with log.open("w") as f:
        for j, p in enumerate(synthetic(num_problems=8, pool=16)):
            atts = [{"index": i, "answer": int(a.key), "finish_reason": "stop",
                     "time_s": a.time_s, "tokens": 100, "weight": 1.0, "entropy": {}}
                    for i, a in enumerate(p.attempts)]
            f.write(json.dumps({"id": p.id, "reference": 1, "attempts": atts}) + "\n")
    png = tmp_path / "curve.png"
    rc = main(["kaggle", "replay", str(log), "--rule", "k4:early_stop_k=4",
               "--rule", "none:early_stop_k=0", "--reps", "10", "--total-s", "2000",
               "--plot", str(png), "--budgets", "200,800,2000"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| k4 |" in out and "| none |" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
