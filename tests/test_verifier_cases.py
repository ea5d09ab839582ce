"""The whole labelled case file (public graders' tests + ours) and real benchmark answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aimo3_recipe.grader import answer_key, verify_answer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_verifier import load_cases, ours_grade


def test_case_file_no_false_positive_and_high_accuracy():
    cases = load_cases(REPO / "tests" / "data" / "grader_cases.jsonl")
    assert len(cases) > 500
    got = [ours_grade(c) for c in cases]
    fp = [
        (c["id"], c["pred"][:80], c["ref"][:60])
        for c, g in zip(cases, got)
        if g and not c["expected"]
    ]
    fn = [c["id"] for c, g in zip(cases, got) if not g and c["expected"]]
    assert fp == []  # a wrong answer accepted is the costly error
    assert 1 - len(fn) / len(cases) >= 0.97, fn


def test_case_file_is_well_formed():
    for line in (REPO / "tests" / "data" / "grader_cases.jsonl").read_text().splitlines():
        c = json.loads(line)
        assert c["mode"] in ("answer", "completion") and c["ref_mode"] in ("answer", "completion")
        assert isinstance(c["expected"], bool)
        if c["source_expected"] is not None and c["expected"] != c["source_expected"]:
            assert "our verdict differs" in c["note"], c  # every disagreement says why


def test_benchmark_reference_answers(shared_data):
    """Each MATH-500 reference equals itself and its answer key is stable; neighbouring
    problems' different answers are not judged equal (a false-positive probe)."""
    rows = [
        json.loads(x) for x in (shared_data / "math500.jsonl").read_text().splitlines() if x.strip()
    ]
    answers = [str(r.get("answer")) for r in rows][:200]
    assert answers
    for a in answers:
        assert verify_answer(a, a), a
        assert answer_key(a) == answer_key(f"${a}$")
    fp = [
        (a, b)
        for a, b in zip(answers, answers[1:])
        if answer_key(a) != answer_key(b) and verify_answer(a, b) and a.strip() != b.strip()
    ]
    assert fp == []
