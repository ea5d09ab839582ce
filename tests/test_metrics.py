"""Metric functions on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import pytest

from aimo3_recipe.evaluation import metrics as M


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    # fraction of k-subsets of n samples (first c correct) containing a correct one
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_hand_computed():
    assert M.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert M.pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert M.pass_at_k(4, 0, 3) == 0.0
    assert M.pass_at_k(4, 3, 2) == 1.0  # only one wrong sample: any pair has a right one
    assert M.pass_at_k(10, 1, 10) == 1.0


def test_pass_at_k_matches_closed_form_and_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed = 1.0 if n - c < k else 1 - math.prod(1 - k / i for i in range(n - c + 1, n + 1))
                assert M.pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)
                assert M.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k <= n"):
        M.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c <= n"):
        M.pass_at_k(4, 5, 1)


def test_mean_pass_at_k_over_problems():
    # problem 1: 2/4 correct, problem 2: 0/4 -> pass@1 = (0.5 + 0)/2; pass@2 = (1 - 1/6 + 0)/2
    correct = [[True, False, True, False], [False] * 4]
    assert M.mean_pass_at_k(correct, 1) == pytest.approx(0.25)
    assert M.mean_pass_at_k(correct, 2) == pytest.approx((1 - 1 / 6) / 2)
    assert M.mean_pass_at_k([], 1) == 0.0


def test_majority_score_clear_winner_tie_and_no_answer():
    assert M.majority_score(["a", "a", "b"], [True, True, False]) == 1.0
    assert M.majority_score(["a", "b", "b"], [True, False, False]) == 0.0
    # two-way tie, one of them right: expected score of a random tie-break
    assert M.majority_score(["a", "b"], [True, False]) == 0.5
    # three-way tie among answers, None samples do not vote
    assert M.majority_score(["a", None, "b", "c", None], [False, False, True, False, False]) \
        == pytest.approx(1 / 3)
    assert M.majority_score([None, None], [False, False]) == 0.0
    assert M.majority_score([], []) == 0.0


def test_majority_score_weighted_votes_can_overturn_the_count():
    keys, ok = ["a", "b", "b"], [True, False, False]
    assert M.majority_score(keys, ok) == 0.0
    assert M.majority_score(keys, ok, weights_N=[0.9, 0.3, 0.3]) == 1.0


def test_majority_score_trusts_grader_within_a_group():
    # same key, but only one sample was judged correct (e.g. a grader timeout on the other)
    assert M.majority_score(["7", "7", "8"], [True, False, False]) == 1.0


def test_majority_at_k_exact_enumeration():
    keys, ok = ["a", "a", "b"], [True, True, False]
    # k=1: {a},{a},{b} -> 1,1,0 ; k=2: {a,a}->1, {a,b}->1/2, {a,b}->1/2 ; k=3: a wins
    assert M.majority_at_k(keys, ok, 1) == pytest.approx(2 / 3)
    assert M.majority_at_k(keys, ok, 2) == pytest.approx(2 / 3)
    assert M.majority_at_k(keys, ok, 3) == 1.0
    with pytest.raises(ValueError):
        M.majority_at_k(keys, ok, 4)


def test_majority_at_k_monte_carlo_is_seeded_and_close_to_exact():
    keys = ["a"] * 6 + ["b"] * 5 + [None] * 5
    ok = [True] * 6 + [False] * 10
    exact = M.majority_at_k(keys, ok, 5, max_subsets=10 ** 6)
    approx1 = M.majority_at_k(keys, ok, 5, max_subsets=400, seed=3)
    approx2 = M.majority_at_k(keys, ok, 5, max_subsets=400, seed=3)
    assert approx1 == approx2
    assert approx1 == pytest.approx(exact, abs=0.08)


def test_wilson_interval_known_values():
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = M.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = M.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    assert M.wilson_interval(0, 0) == (0.0, 1.0)
    # wider at 99% than at 90%
    w99 = M.wilson_interval(9, 30, confidence=0.99)
    w90 = M.wilson_interval(9, 30, confidence=0.90)
    assert w99[0] < w90[0] < 0.3 < w90[1] < w99[1]


def test_bootstrap_interval_properties():
    assert M.bootstrap_interval([0.5] * 7) == (0.5, 0.5)
    scores = [1.0] * 9 + [0.0] * 21  # 30 problems, 30%
    lo, hi = M.bootstrap_interval(scores, num_resamples=2000, seed=1)
    assert M.bootstrap_interval(scores, num_resamples=2000, seed=1) == (lo, hi)
    assert lo < 0.3 < hi
    # close to Wilson for a proportion of 30
    wlo, whi = M.wilson_interval(9, 30)
    assert lo == pytest.approx(wlo, abs=0.05) and hi == pytest.approx(whi, abs=0.05)


def test_sample_counts_and_curve():
    assert M.sample_counts(None, 8) == [1, 2, 4, 8]
    assert M.sample_counts(None, 6) == [1, 2, 4, 6]
    assert M.sample_counts([3, 9, 1], 4) == [1, 3]
    curve = M.accuracy_curve([["a", "a", "b"]], [[True, True, False]], [1, 3])
    assert curve[1] == {"pass": pytest.approx(2 / 3), "maj": pytest.approx(2 / 3)}
    assert curve[3] == {"pass": 1.0, "maj": 1.0}


def test_group_indices_natural_order_and_missing_labels():
    labels = ["Level 10", "Level 2", None, "Level 2", ""]
    assert M.group_indices(labels) == {"Level 2": [1, 3], "Level 10": [0]}
    assert M.rate([True, False, True, True]) == 0.75 and M.rate([]) == 0.0


def test_mean_interval_never_collapses_on_all_zero_or_all_one():
    assert M.mean_interval([0.0] * 30) == M.wilson_interval(0, 30)
    lo, hi = M.mean_interval([1.0] * 30)
    assert hi == 1.0 and lo < 1.0
    mixed = [0.25, 0.5, 0.0, 1.0, 0.75]
    assert M.mean_interval(mixed, seed=2) == M.bootstrap_interval(mixed, seed=2)
