"""Paired comparison of two models on the same problems, on hand-computed numbers."""

from __future__ import annotations

import pytest

from aimo3_recipe.evaluation.paired import format_gain, mcnemar_exact, paired_gain


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)  # 2 * (C(10,0)+C(10,1))/2^10
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)  # two-sided: symmetric
    assert mcnemar_exact(3, 3) == 1.0  # capped: 2 * 42/64 > 1
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_discordant_counts_and_means():
    before = [1, 1, 0, 0, 0, 1, 0, 0, 0, 0]
    after = [1, 0, 1, 1, 1, 1, 0, 1, 0, 0]
    g = paired_gain(before, after, seed=1)
    assert (g.n, g.worse, g.better) == (10, 1, 4)
    assert (g.before, g.after, g.gain) == pytest.approx((0.3, 0.6, 0.3))
    assert g.p_value == pytest.approx(2 * (1 + 5) / 32)  # b=1, c=4
    assert g.ci[0] <= 0.3 <= g.ci[1]


def test_identical_models_show_no_change():
    scores = [1, 0, 1, 1, 0, 0, 1, 0]
    g = paired_gain(scores, scores)
    # not [0, 0]: 0 of 8 changed bounds the change by Wilson's upper limit, z^2/(n+z^2)
    z2 = 1.959964 ** 2
    assert g.ci == pytest.approx((-z2 / (8 + z2), z2 / (8 + z2)), abs=1e-5)
    assert g.gain == 0 and g.p_value == 1.0
    assert g.verdict == "no change shown"


def test_consistent_gain_is_shown_and_a_consistent_loss_is_a_loss():
    before = [0] * 40 + [1] * 40
    after = [1] * 20 + [0] * 20 + [1] * 40  # 20 problems better, none worse
    g = paired_gain(before, after)
    assert g.gain == pytest.approx(0.25) and g.ci[0] > 0.1 and g.verdict == "gain"
    assert g.p_value == pytest.approx(2 / 2 ** 20)
    assert paired_gain(after, before).verdict == "loss"
    assert "+25.0 points" in format_gain(g) and "0 worse / 20 better" in format_gain(g)


def test_a_small_mixed_change_is_not_called_a_gain():
    before = [1, 0] * 20
    after = [0, 1] * 3 + [1, 0] * 17  # 3 better, 3 worse: no net change
    before, after = before + [0, 0], after + [1, 0]  # one more better: +1 of 42
    g = paired_gain(before, after)
    assert (g.worse, g.better) == (3, 4) and g.verdict == "no change shown"


def test_fractional_scores_and_mismatched_lengths():
    g = paired_gain([0.5, 0.0], [1.0, 0.5])  # majority-vote ties score 1/t
    assert g.gain == pytest.approx(0.5) and g.better == 2
    with pytest.raises(ValueError, match="one score per problem"):
        paired_gain([1, 0], [1])
