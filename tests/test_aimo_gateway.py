"""The local gateway: predict over a CSV, submission.parquet, the score and the two-run
penalised score; the real `aimo3 kaggle gateway` CLI end to end on a tiny random model
(transformers engine); and, behind the vLLM marker, the same on the embedded default."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from aimo3_recipe.inference.aimo import SimClock, SolverConfig, penalised_score
from aimo3_recipe.inference.aimo.gateway import read_problems, run_solver
from aimo3_recipe.testing import ClockedScriptEngine


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def boxed(answer, steps):
    return [(f"Thus \\boxed{{{answer}}}.", steps)]


def test_penalised_score_by_hand():
    # problem 1 right twice (1), problem 2 once (0.5), problem 3 never (0)
    assert penalised_score([[True, True, False], [True, False, False]]) == 1.5
    assert penalised_score([[True, False]]) == 1.0
    assert penalised_score([]) == 0.0


def test_read_problems_checks_columns_and_answers(tmp_path):
    ok = write_csv(tmp_path / "a.csv", [{"id": "x", "problem": "p", "answer": "007"}])
    assert read_problems(ok)[0].answer == 7
    bad = write_csv(tmp_path / "b.csv", [{"id": "x", "question": "p"}])
    with pytest.raises(ValueError, match="id,problem"):
        read_problems(bad)
    bad = write_csv(tmp_path / "c.csv", [{"id": "x", "problem": "p", "answer": "1/2"}])
    with pytest.raises(ValueError, match="not an integer"):
        read_problems(bad)


def test_gateway_writes_submission_and_scores_two_runs(tmp_path):
    import pyarrow.parquet as pq

    problems = write_csv(tmp_path / "ref.csv", [
        {"id": "g1", "problem": "G1: what is 5?", "answer": "5"},
        {"id": "g2", "problem": "G2: what is 6?", "answer": "6"},
        {"id": "g3", "problem": "G3: find the remainder when N is divided by 1000.",
         "answer": "456"},
    ])
    plans = {"G1": [boxed(5, 3)] * 4, "G2": [boxed(7, 3)] * 4, "G3": [boxed(123456, 3)] * 4}
    clock = SimClock()
    engine = ClockedScriptEngine(clock, plans)
    cfg = SolverConfig(total_s=100.0, num_problems=3, min_s=0.0, reserve_s=0.0,
                       num_attempts=4, early_stop_k=4, max_tokens=100, log_text=False)
    report, summaries = run_solver(cfg, problems, tmp_path / "out", runs=2, shuffle_seed=1,
                                   engine=engine, clock=clock)
    assert report.scores == [2, 2] and report.penalised == 2.0
    assert report.valid_answers == 6
    table = pq.read_table(tmp_path / "out" / "submission.parquet").to_pylist()
    assert sorted((r["id"], r["answer"]) for r in table) == [("g1", 5), ("g2", 7), ("g3", 456)]
    gw = json.loads((tmp_path / "out" / "gateway.json").read_text())
    assert gw["penalised"] == 2.0 and len(gw["answers"]) == 6
    for run in (0, 1):
        lines = (tmp_path / "out" / f"run{run}" / "problems.jsonl").read_text().splitlines()
        recs = {json.loads(x)["id"]: json.loads(x) for x in lines}
        assert recs["g3"]["correct"] is True and recs["g3"]["reference"] == 456
        assert recs["g2"]["correct"] is False
        assert recs["g3"]["attempts"][0]["answer_status"] == "reduced"
    assert [s["correct"] for s in summaries] == [2, 2]
    assert all(s["within_budget"] for s in summaries)


def test_cli_gateway_on_a_tiny_random_model(tmp_path, tiny_model_dir):
    """The real `aimo3 kaggle gateway` with the transformers engine: the random model rarely
    answers, so answers are mostly the fallback; every one must be valid and logged."""
    from aimo3_recipe.cli import main

    problems = write_csv(tmp_path / "ref.csv", [
        {"id": "t1", "problem": "What is 2 + 3?", "answer": "5"},
        {"id": "t2", "problem": "What is 12 + 35?", "answer": "47"},
    ])
    out = tmp_path / "out"
    rc = main(["kaggle", "gateway", "--problems", str(problems), "--out-dir", str(out),
               "--model-name-or-path", str(tiny_model_dir), "--use-vllm", "false",
               "--num-attempts", "2", "--max-tokens", "12", "--max-tool-calls", "1",
               "--sandbox-sessions", "1", "--total-s", "300", "--min-s", "1",
               "--reserve-s", "0", "--seed", "0"])
    assert rc == 0
    gw = json.loads((out / "gateway.json").read_text())
    assert gw["valid_answers"] == 2 and gw["scores"][0] is not None
    recs = [json.loads(x) for x in (out / "run0" / "problems.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == ["t1", "t2"]
    for r in recs:
        assert len(r["attempts"]) == 2 and 0 <= r["answer"] <= 99999
        assert all(a["entropy"] for a in r["attempts"])  # top-k log-probs reached the log
        assert r["used_s"] <= r["budget_s"] + 1.0
    summary = json.loads((out / "run0" / "summary.json").read_text())["summary"]
    assert summary["problems"] == 2 and summary["within_budget"]


@pytest.mark.slow
@pytest.mark.vllm
def test_gateway_end_to_end_on_the_embedded_default_with_vllm(tmp_path, vllm_engine):
    """The acceptance run: generated problems through the local gateway with the embedded
    default on vLLM (the session's one engine), 8 concurrent TIR attempts each. Every problem
    must get a valid answer inside the budget and a complete log; right answers are rare."""
    from aimo3_recipe.data.synthetic import generate_synthetic

    recs = [r for r in generate_synthetic(12, seed=3, kinds=["arithmetic", "modular",
                                                              "gcd_lcm", "counting"])
            if r.answer.isdigit() and int(r.answer) <= 99999][:6]
    problems = write_csv(tmp_path / "ref.csv", [
        {"id": f"s{i}", "problem": r.problem, "answer": r.answer} for i, r in enumerate(recs)])
    cfg = SolverConfig(total_s=300.0, num_problems=len(recs), reserve_s=30.0, min_s=10.0,
                       max_s=90.0, hard_reserve_s=5.0, num_attempts=8, temperature=0.7,
                       top_p=0.95, max_tokens=384, max_tool_calls=2, cell_timeout_s=6.0,
                       sandbox_sessions=4, early_stop_k=4, selection="weighted_vote")
    report, summaries = run_solver(cfg, problems, tmp_path / "out", engine=vllm_engine)
    s = summaries[0]
    print(f"\nAIMO gateway on the embedded default (vLLM CPU): {s['problems']} problems, "
          f"{s['answers_valid']} valid answers, {s['correct']} right, {s['fallbacks']} "
          f"fallbacks, stops {s['stop_reasons']}, attempts {s['attempts']} "
          f"({s['attempts_cancelled']} cancelled, {s['attempts_with_valid_answer']} with a "
          f"valid answer), {s['tokens']} tokens, {s['tool_calls']} tool calls, time "
          f"{s['elapsed_s']:.1f}s of {s['total_budget_s']:.0f}s")
    assert report.valid_answers == len(recs) and s["answers_valid"] == len(recs)
    assert s["within_budget"] and s["elapsed_s"] <= cfg.total_s
    lines = (tmp_path / "out" / "run0" / "problems.jsonl").read_text().splitlines()
    assert len(lines) == len(recs)
    for line in lines:
        rec = json.loads(line)
        assert len(rec["attempts"]) == cfg.num_attempts and rec["used_s"] <= rec["budget_s"]
        for a in rec["attempts"]:
            assert a["tokens"] > 0 or a["finish_reason"] == "cancelled"
            assert a["entropy"] or a["tokens"] == 0  # vLLM's top-k log-probs reached the log
            assert a["text"] is not None
