"""Group-relative advantages, and which groups are worth training on.

GRPO replaces a value network with the group: each rollout's advantage is its reward minus
the mean reward of the G rollouts of the same problem. We do NOT divide by the group std by
default: with the +0.1 format bonus, a group whose answers are all wrong but only some boxed
has std ~0.05, and dividing by it would blow the format difference up to full-size
advantages (format hacking). `scale_by_std=True` gives the paper's version, computed as TRL
does (sample std with Bessel's correction, + 1e-4).

A group where every rollout is correct, or every rollout is incorrect, carries no
correctness signal and is dropped from the loss (its advantages are set to 0). Informative
means "correctness varies", not "reward varies": the format bonus alone must not make a
group worth a gradient step, for the same format-hacking reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aimo3_recipe.rl.types import RolloutGroup

STD_EPSILON = 1e-4  # added to the std before dividing (TRL's value)


def group_advantages(
    rewards_G: list[float], *, scale_by_std: bool = False, eps: float = STD_EPSILON
) -> list[float]:
    """rewards_G - mean(rewards_G); divided by (sample std + eps) when `scale_by_std`.
    A group of one has std 0 (no Bessel correction possible), so its advantage is 0."""
    if not rewards_G:
        return []
    g = len(rewards_G)
    mean = sum(rewards_G) / g
    centred = [r - mean for r in rewards_G]
    if not scale_by_std:
        return centred
    std = math.sqrt(sum(c * c for c in centred) / (g - 1)) if g > 1 else 0.0
    return [c / (std + eps) for c in centred]


def is_informative(correct_G: list[bool]) -> bool:
    """True when correctness varies in the group (some right, some wrong). Rewards are not
    looked at: a format-bonus difference alone does not count."""
    return len(set(correct_G)) > 1


@dataclass
class AdvantageStats:
    num_groups: int  # groups seen
    num_all_correct: int  # zero-variance groups where every rollout was correct (too easy)
    num_all_wrong: int  # zero-variance groups where every rollout was wrong (too hard)
    num_dropped: int  # zero-variance groups left out of the loss (0 if dropping is off)

    @property
    def num_zero_variance(self) -> int:
        return self.num_all_correct + self.num_all_wrong

    def metrics(self) -> dict[str, float]:
        """Namespaced for the step's metrics dict."""
        n = max(self.num_groups, 1)
        return {
            "groups/num": float(self.num_groups),
            "groups/frac_zero_variance": self.num_zero_variance / n,
            "groups/frac_all_correct": self.num_all_correct / n,
            "groups/frac_all_wrong": self.num_all_wrong / n,
            "groups/num_dropped": float(self.num_dropped),
        }


def assign_advantages(
    groups: list[RolloutGroup],
    *,
    scale_by_std: bool = False,
    drop_uninformative: bool = True,
    eps: float = STD_EPSILON,
) -> tuple[list[RolloutGroup], AdvantageStats]:
    """Set `advantages_G` and `informative` on every (scored) group; return the groups to
    train on and the counts. Dropped groups get advantages of 0 so logs stay complete."""
    kept: list[RolloutGroup] = []
    all_correct = all_wrong = 0
    for group in groups:
        if len(group.rewards_G) != group.size or len(group.correct_G) != group.size:
            raise ValueError(
                f"assign_advantages: group for problem {group.problem[:60]!r} has "
                f"{group.size} rollouts but {len(group.rewards_G)} rewards and "
                f"{len(group.correct_G)} verdicts; call rewards.score_group on it first"
            )
        group.informative = is_informative(group.correct_G)
        if not group.informative:
            if all(group.correct_G):
                all_correct += 1
            else:
                all_wrong += 1
        if group.informative or not drop_uninformative:
            group.advantages_G = group_advantages(group.rewards_G, scale_by_std=scale_by_std,
                                                  eps=eps)
            kept.append(group)
        else:
            group.advantages_G = [0.0] * group.size
    stats = AdvantageStats(len(groups), all_correct, all_wrong, len(groups) - len(kept))
    return kept, stats
