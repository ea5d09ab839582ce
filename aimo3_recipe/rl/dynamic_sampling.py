"""Dynamic sampling (DAPO, Yu et al. 2025): every step trains on `batch_size` groups whose
correctness varies.

A group whose rollouts are all right or all wrong has zero advantage everywhere and adds no
gradient; without refills a step trains on whatever is left (or skips its update). Here the
step keeps drawing problems until it holds `batch_size` informative groups, at most
`max_rounds` draws in all (the first one included), and truncates to `batch_size`. A refill
draws about the number of problems the step's informative rate so far says it needs (at most
`batch_size`), from a seeded stream that does not depend on timing, so a run repeats.

What it costs is counted: `sampling/rounds`, `sampling/groups_drawn`,
`sampling/extra_generation_frac` (model tokens of the refills / those of the first draw) and
`sampling/short` (1 when the bound stopped the refill before `batch_size` groups were found).

`drop_solved` (optional): a problem whose group did not vary (too easy or too hard for the
policy at the time) is left out of later draws: in the step's regular draw it is replaced by
a seeded random one that is not dropped. Limits: the set of dropped problems is kept per rank
(ranks may then draw the same replacement), and it is restored on resume from rank 0's
checkpoint only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.rl.advantages import AdvantageStats, assign_advantages
from aimo3_recipe.rl.types import RolloutGroup


@dataclass
class SamplingStats:
    rounds: int  # draws this step made (1: no refill)
    groups_drawn: int  # groups sampled in all rounds
    informative: int  # of them, groups whose correctness varies (before truncation)
    target: int  # informative groups wanted (batch_size)
    first_tokens: int  # model tokens sampled by the first draw
    extra_tokens: int  # model tokens sampled by the refills

    def metrics(self) -> dict[str, float]:
        return {
            "sampling/rounds": float(self.rounds),
            "sampling/groups_drawn": float(self.groups_drawn),
            "sampling/informative_groups": float(self.informative),
            "sampling/short": float(self.informative < self.target),
            "sampling/extra_generation_frac": self.extra_tokens / max(self.first_tokens, 1),
        }


def _tokens(groups: Sequence[RolloutGroup]) -> int:
    return sum(r.num_model_tokens for g in groups for r in g.rollouts)


def refill_size(need: int, informative: int, drawn: int, batch_size: int) -> int:
    """Problems to draw for `need` more informative groups, at the rate seen so far (all of
    `batch_size` when none varied yet)."""
    if informative == 0:
        return batch_size
    return max(1, min(batch_size, math.ceil(need * drawn / informative)))


def fill_informative(
    first: list[MathRecord],
    sample: Callable[[list[MathRecord], int], list[RolloutGroup]],
    draw: Callable[[int, int], list[MathRecord]],
    *,
    batch_size: int,
    max_rounds: int,
    scale_by_std: bool = False,
) -> tuple[list[RolloutGroup], list[RolloutGroup], AdvantageStats, SamplingStats]:
    """Sample `first`, then refill until `batch_size` groups vary or `max_rounds` draws were
    made. `sample(records, round)` returns scored groups; `draw(n, round)` n fresh problems
    ([] stops the refill). Returns (every group, the kept groups, their advantage counts, the
    refill counts). Informative groups past `batch_size` get advantages 0 and are not kept."""
    groups: list[RolloutGroup] = []
    informative = 0
    records = first
    rounds = 0
    first_tokens = 0
    while records and rounds < max_rounds:
        new = sample(records, rounds)
        if rounds == 0:
            first_tokens = _tokens(new)
        rounds += 1
        groups.extend(new)
        informative += sum(len(set(g.correct_G)) > 1 for g in new)
        if informative >= batch_size or rounds == max_rounds:
            break
        records = draw(refill_size(batch_size - informative, informative, len(groups),
                                   batch_size), rounds)
    kept, adv = assign_advantages(groups, scale_by_std=scale_by_std)
    for g in kept[batch_size:]:  # surplus: sampled and logged, not trained
        g.advantages_G = [0.0] * g.size
    kept = kept[:batch_size]
    adv.num_dropped = len(groups) - len(kept)
    stats = SamplingStats(rounds, len(groups), informative, batch_size, first_tokens,
                          _tokens(groups) - first_tokens)
    return groups, kept, adv, stats


def draw_problems(problems: Sequence[MathRecord], n: int, *, seed: int, step: int, round_: int,
                  rank: int = 0, dropped: Collection[str] = (),
                  exclude: Collection[str] = ()) -> list[MathRecord]:
    """`n` problems drawn without replacement from those not dropped or excluded, by a
    generator seeded with (seed, step, round, rank): the same draws on every run."""
    pool = [p for p in problems if p.problem not in dropped and p.problem not in exclude]
    rng = random.Random(f"refill-{seed}-{step}-{round_}-{rank}")
    return rng.sample(pool, min(n, len(pool)))


def replace_dropped(records: list[MathRecord], problems: Sequence[MathRecord],
                    dropped: Collection[str], *, seed: int, step: int,
                    rank: int = 0) -> list[MathRecord]:
    """`records` with the dropped problems swapped for seeded draws among the others (kept
    as they are when too few problems are left to replace them)."""
    out = [r for r in records if r.problem not in dropped]
    missing = len(records) - len(out)
    if not missing:
        return records
    fresh = draw_problems(problems, missing, seed=seed, step=step, round_=-1, rank=rank,
                          dropped=dropped, exclude={r.problem for r in out})
    if len(fresh) < missing:
        return records
    return out + fresh
