"""Stage gains from the comparison's samples, on hand-made records."""

from __future__ import annotations

import pytest

from aimo3_recipe.training.stage_gains import (
    gains_markdown,
    part_accuracy,
    problem_scores,
    stage_gains,
    unproven_stages,
)


def _recs(greedy: dict[str, bool], sampled: dict[str, list[tuple[str, bool]]]) -> list[dict]:
    out = [{"header": {}}]
    out += [{"kind": "greedy", "problem_id": p, "correct": c} for p, c in greedy.items()]
    out += [{"kind": "sampled", "problem_id": p, "answer_key": k, "correct": c}
            for p, s in sampled.items() for k, c in s]
    return out


def test_problem_scores_greedy_and_majority_with_ties():
    s = problem_scores(_recs({"a": True, "b": False},
                             {"a": [("1", True), ("1", True), ("2", False)],
                              "b": [("3", True), ("4", False)]}))  # a 2-way tie: 1/2
    assert s == {"greedy": {"a": 1.0, "b": 0.0}, "sc": {"a": 1.0, "b": 0.5}}


def test_gains_per_part_and_overall_by_hand():
    ids = [f"p{i}" for i in range(8)]
    parts = {pid: ("locked" if i >= 4 else "skills") for i, pid in enumerate(ids)}
    base = {"greedy": {p: 0.0 for p in ids}}
    tir = {"greedy": {p: float(i % 2 == 0) for i, p in enumerate(ids)}}  # 4 of 8 right
    rows = stage_gains({"base": base, "tir": tir}, parts, comparisons=[("tir", "base")])
    by_part = {r.part: r.gain for r in rows}
    assert set(by_part) == {"all", "locked", "skills"}
    assert by_part["all"].gain == pytest.approx(0.5) and by_part["all"].better == 4
    assert by_part["locked"].n == 4 and by_part["locked"].gain == pytest.approx(0.5)
    assert by_part["all"].p_value == pytest.approx(2 / 16)  # McNemar b=0, c=4
    lines = gains_markdown(rows, {"tir": "after SFT-TIR", "base": "base model"}, sc=4)
    assert len(lines) == 2 + 3 and "| after SFT-TIR | base model | locked | 4 |" in lines[3]


def test_only_problems_both_models_answered_and_missing_models_skipped():
    scores = {"cot": {"greedy": {"a": 1.0, "b": 0.0}},
              "tir": {"greedy": {"a": 1.0, "b": 1.0, "c": 1.0}}}
    rows = stage_gains(scores, {}, comparisons=[("tir", "cot"), ("rl", "tir")])
    assert [(r.after, r.part, r.gain.n) for r in rows] == [("tir", "all", 2)]


def test_a_stage_without_a_shown_gain_is_named():
    ids = [f"p{i}" for i in range(60)]
    flat = {"greedy": {p: float(i % 3 == 0) for i, p in enumerate(ids)}}
    better = {"greedy": {p: float(i % 3 == 0 or i < 30) for i, p in enumerate(ids)}}
    rows = stage_gains({"base": flat, "cot": flat, "tir": better}, {})
    assert unproven_stages(rows) == ["cot"]


def test_part_accuracy_and_the_sc_column_only_when_sampled():
    scores = {"base": {"greedy": {"a": 1.0, "b": 0.0, "c": 0.0}, "sc": {}},
              "tir": {"greedy": {"a": 1.0, "b": 1.0, "c": 0.0}, "sc": {}}}
    parts = {"a": "skills", "b": "stories (locked)", "c": "stories (locked)"}
    acc = part_accuracy(scores, parts)
    assert acc["tir"] == {"all": (pytest.approx(2 / 3), 3), "skills": (1.0, 1),
                          "stories (locked)": (0.5, 2)}
    lines = gains_markdown(stage_gains(scores, parts, comparisons=[("tir", "base")]), {}, sc=0)
    assert "SC@" not in lines[0] and lines[0].count("gain [95% interval]") == 1
