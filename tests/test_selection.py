"""Voting, early stopping and GenSelect's pure parts, on hand-made candidates."""

from __future__ import annotations

import math

import pytest

from aimo3_recipe.inference.genselect import (
    build_genselect_prompt,
    parse_selection,
    summarise_solution,
    windows,
)
from aimo3_recipe.inference.solution_selection import (
    agreement,
    confidence_weight,
    majority_vote,
    should_stop_early,
    weighted_vote,
)


def test_majority_clear_winner_counts_votes():
    r = majority_vote(["4", "5", "4", None, "4"])
    assert r.answer == "4"
    assert r.top_votes == 3
    assert not r.tie and r.tied == []
    assert r.num_valid == 4
    assert sorted(r.votes.values()) == [1.0, 3.0]


def test_majority_groups_equivalent_answers():
    # "1/2", "\\frac{1}{2}" and "0.5" are one answer for the verifier's key
    r = majority_vote(["3", "1/2", "\\frac{1}{2}", "0.5", "3"])
    assert r.top_votes == 3
    assert r.answer == "1/2"  # the group's first-seen spelling


def test_majority_tie_broken_by_first_seen_and_reported():
    r = majority_vote(["7", "9", "9", "7"])
    assert r.answer == "7"  # 7 appeared first
    assert r.tie and r.tied == ["7", "9"]
    assert r.tie_break == "first_seen"
    r2 = majority_vote(["9", "7", "7", "9"])
    assert r2.answer == "9"


def test_all_different_is_a_tie_of_all():
    r = majority_vote(["1", "2", "3"])
    assert r.answer == "1" and r.tie and r.tied == ["1", "2", "3"]


def test_no_answers():
    for answers in ([], [None, None], ["", "  "]):
        r = majority_vote(answers)
        assert r.answer is None and r.votes == {} and not r.tie and r.num_valid == 0


def test_confidence_weight_is_geometric_mean_probability():
    assert confidence_weight([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert confidence_weight([math.log(0.25), math.log(1.0)]) == pytest.approx(0.5)
    assert confidence_weight([]) == 1.0 and confidence_weight(None) == 1.0


def test_weighted_vote_differs_from_majority_when_minority_is_confident():
    answers = ["10", "10", "12"]
    weights = [0.2, 0.25, 0.9]  # two unsure samples vs one confident one
    assert majority_vote(answers).answer == "10"
    w = weighted_vote(answers, weights)
    assert w.answer == "12"
    assert w.votes[w.winner_key] == pytest.approx(0.9)
    assert sum(w.votes.values()) == pytest.approx(1.35)
    # ...and agrees with majority when weights are equal
    assert weighted_vote(answers, [0.5, 0.5, 0.5]).answer == "10"


def test_weighted_vote_rejects_bad_weights():
    with pytest.raises(ValueError):
        weighted_vote(["1", "2"], [0.5])
    with pytest.raises(ValueError):
        weighted_vote(["1"], [float("nan")])


def test_weighted_tie_first_seen():
    w = weighted_vote(["a", "b"], [0.5, 0.5])
    assert w.answer == "a" and w.tie


def test_agreement_and_early_stop():
    answers = ["2", None, "3", "2", "2"]
    assert agreement(answers) == 3
    assert should_stop_early(answers, 3)
    assert not should_stop_early(answers, 4)
    assert not should_stop_early(answers, None) and not should_stop_early(answers, 0)
    assert agreement([None]) == 0


# -- GenSelect pure parts ---------------------------------------------------------------
def test_parse_selection():
    assert parse_selection("Solution 1 is wrong.\nJudgment: 2", 3) == 2
    assert parse_selection("judgement: 0 ... Judgment: 1", 3) == 1  # the last one counts
    assert parse_selection("The best is \\boxed{1}.", 2) == 1
    assert parse_selection("Judgment: 5", 3) is None  # out of range
    assert parse_selection("I cannot decide.", 3) is None


def test_summarise_keeps_head_and_answer_tail():
    text = "START " + "x" * 1000 + " so the answer is \\boxed{42}"
    s = summarise_solution(text, 200)
    assert len(s) <= 200
    assert s.startswith("START") and s.endswith("\\boxed{42}") and "[...]" in s
    assert summarise_solution("short", 200) == "short"


def test_genselect_prompt_fits_budget_and_numbers_solutions():
    sols = ["a" * 5000 + "\\boxed{1}", "b" * 5000 + "\\boxed{2}", "c\\boxed{3}"]
    p = build_genselect_prompt("What is x?", sols, max_chars=1500)
    assert "Solution 0:" in p and "Solution 2:" in p and "What is x?" in p
    assert "\\boxed{1}" in p and "\\boxed{2}" in p  # tails survive summarising
    assert len(p) < 1500 + 600  # summaries + fixed instruction text


def test_windows():
    assert windows(5, 2) == [[0, 1], [2, 3, 4]]  # no window of one
    assert windows(4, 4) == [[0, 1, 2, 3]]
    assert windows(9, 4) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert windows(3, 1) == [[0, 1, 2]]  # size below 2 is raised to 2 (then merged)
