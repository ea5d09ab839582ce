"""Did a training stage help? A paired comparison of two models on the same problems.

Two models answering the same problems are not two independent samples: most problems are
solved by both or by neither, and only the discordant ones carry evidence. So a stage's gain
is measured per problem (after minus before) and tested on the pairs:

- McNemar's exact test on the discordant counts (b: solved before only, c: solved after
  only): under "no change" each discordant problem is a fair coin, p = 2 * P(Bin(b+c, 1/2)
  <= min(b, c)), capped at 1;
- a paired bootstrap interval of the mean per-problem difference (problems resampled with
  replacement, seeded), which also covers fractional scores such as a majority vote's 1/t
  for a t-way tie. When no problem changed, the bootstrap would collapse to [0, 0]; the
  interval is then +-(Wilson upper bound of 0 changed out of n).

A gain "is shown" when its interval lies above 0 (a loss when it lies below); otherwise the
report says the stage cannot show a gain on this many problems. Limits: the interval is a
percentile bootstrap (slightly narrow for small n); with fewer than ~10 discordant
problems no change under ~10 points can be resolved either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aimo3_recipe.evaluation.metrics import bootstrap_interval, wilson_interval


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (b, c >= 0)."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact needs counts >= 0; got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedGain:
    """After minus before on the same problems (accuracies in [0, 1])."""

    n: int  # problems compared
    before: float  # mean score before
    after: float  # mean score after
    gain: float  # after - before
    ci: tuple[float, float]  # paired bootstrap interval of the gain
    worse: int  # b: problems scored higher before than after
    better: int  # c: problems scored higher after than before
    p_value: float  # McNemar exact on (worse, better)

    @property
    def verdict(self) -> str:
        """'gain' | 'loss' | 'no change shown' (the interval straddles 0)."""
        if self.ci[0] > 0:
            return "gain"
        if self.ci[1] < 0:
            return "loss"
        return "no change shown"


def paired_gain(before_P: Sequence[float], after_P: Sequence[float], *,
                confidence: float = 0.95, num_resamples: int = 2000,
                seed: int = 0) -> PairedGain:
    """Compare per-problem scores of two models (same problems, same order)."""
    if len(before_P) != len(after_P):
        raise ValueError(f"paired_gain needs one score per problem from each model; got "
                         f"{len(before_P)} and {len(after_P)} (were they run on different "
                         f"problem sets?)")
    n = len(before_P)
    if n == 0:
        return PairedGain(0, 0.0, 0.0, 0.0, (-1.0, 1.0), 0, 0, 1.0)
    diff_P = [float(a) - float(b) for b, a in zip(before_P, after_P)]
    worse = sum(d < 0 for d in diff_P)
    better = sum(d > 0 for d in diff_P)
    if worse == better == 0:
        # no problem changed: the bootstrap would collapse to [0, 0] and claim certainty
        # from any n; the share of problems that could have changed is bounded by Wilson's
        bound = wilson_interval(0, n, confidence)[1]
        lo, hi = -bound, bound
    else:
        lo, hi = bootstrap_interval(diff_P, confidence=confidence,
                                    num_resamples=num_resamples, seed=seed)
    before, after = sum(map(float, before_P)) / n, sum(map(float, after_P)) / n
    return PairedGain(n, before, after, after - before, (lo, hi), worse, better,
                      mcnemar_exact(worse, better))


def format_gain(g: PairedGain) -> str:
    """'+12.5 points [+5.0, +20.0], 3 worse / 13 better, McNemar p = 0.021: gain'."""
    return (f"{100 * g.gain:+.1f} points [{100 * g.ci[0]:+.1f}, {100 * g.ci[1]:+.1f}], "
            f"{g.worse} worse / {g.better} better, McNemar p = {g.p_value:.3g}: {g.verdict}")
