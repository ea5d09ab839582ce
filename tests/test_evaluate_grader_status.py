"""The evaluation counts the grader's unsure verdicts (timeout, too_complex, error) and writes
them into results.json and report.md: a count nobody reads would be a swallowed error."""

from __future__ import annotations

import json
from pathlib import Path

from aimo3_recipe.evaluation.config import EvalConfig
from aimo3_recipe.evaluation.evaluate import main
from aimo3_recipe.grader import equivalence, worker_pool
from aimo3_recipe.grader.worker_pool import WorkerTimeout
from aimo3_recipe.testing import ReplyEngine

# problem -> (reference, what the model boxes, the grader status it must get)
CASES = [
    ("1", "1", "ok"),  # right
    ("2", "3", "ok"),  # really wrong
    ("10^{10^{10}}+1", "10^{10^{10}}", "too_complex"),  # refused by the complexity guard
    ("\\frac{1}{3}", "\\int_0^1 x^2\\,dx", "timeout"),  # needs sympy: times out
    ("\\frac{1}{2}", "\\int_0^1 x\\,dx", "error"),  # needs sympy: the worker is broken
]


class _FakePool:
    """Stands for the sympy workers: one request times out, every other one crashes."""

    def call(self, req: dict, timeout: float) -> dict:
        if "x^2" in str(req.get("a")):
            raise WorkerTimeout()
        raise RuntimeError("sympy worker exited")


def test_grader_status_counts_reach_results_and_report(tmp_path: Path, tiny_tokenizer,
                                                       monkeypatch):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"Problem {i}.", "solution": "",
                                         "answer": ref}) + "\n"
                             for i, (ref, _, _) in enumerate(CASES)))
    monkeypatch.setattr(worker_pool, "get_pool", lambda: _FakePool())
    equivalence._CACHE.clear()  # a verdict cached by another test would skip the fake pool

    def reply(prompt: str, sample_index: int, call_index: int) -> tuple[str, float]:
        i = next(i for i in range(len(CASES)) if f"Problem {i}." in prompt)
        return f"So \\boxed{{{CASES[i][1]}}}.", -0.1

    out = tmp_path / "run"
    main(EvalConfig(benchmark=str(bench), strategy="greedy", output_dir=str(out),
                    progress=False), engine=ReplyEngine(tiny_tokenizer, reply))
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()[1:]]
    assert sorted((r["problem_index"], r["grade_status"]) for r in recs) == [
        (i, status) for i, (_, _, status) in enumerate(CASES)]
    results = json.loads((out / "results.json").read_text())
    assert results["grader"] == {"ok": 2, "timeout": 1, "too_complex": 1, "error": 1}
    greedy = results["metrics"]["greedy"]
    assert (greedy["grader_timeouts"], greedy["grader_too_complex"], greedy["grader_errors"]) \
        == (1, 1, 1)
    assert greedy["accuracy"] == 0.2
    report = (out / "report.md").read_text()
    assert "5 verdicts; 1 timed out, 1 refused as too complex, 1 errors" in report
