"""Problems at the edge of the policy's ability, chosen once before RL.

GRPO learns only from groups whose rollouts disagree (advantages.py drops the others). On
problems the start policy always solves, or never does, a whole step can pass without a
gradient: the CPU demo's RL stage started at a training reward of 0.81, so most of its groups
were all-correct and it learnt nothing measurable (issue 25). So before the first step each
candidate problem is sampled `samples` times from the start policy, and only those solved
sometimes but not always (pass rate strictly between 0 and 1) are kept.

Limits: done once, against the start policy (as the policy improves, kept problems drift
towards "always solved"; dynamic sampling in the loop handles that per step); with few
samples a problem solved 1 time in 10 may look unsolvable (noise at the edges). The chosen
problems are written to `<run>/edge_problems.jsonl` so a resumed run trains on the same set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.rl.rewards import score_group
from aimo3_recipe.rl.rollouts import sample_groups
from aimo3_recipe.utils.notice import notice

FILENAME = "edge_problems.jsonl"


def at_edge(correct_counts_P: Sequence[int], samples: int) -> list[bool]:
    """Per problem: solved in some but not all of its `samples` rollouts."""
    return [0 < c < samples for c in correct_counts_P]


@dataclass(frozen=True)
class EdgeStats:
    tried: int  # candidate problems sampled
    kept: int  # problems at the edge (0 < pass rate < 1)
    always: int  # problems every rollout solved (too easy)
    never: int  # problems no rollout solved (too hard)

    def line(self) -> str:
        return (f"RL edge filter: kept {self.kept} of {self.tried} problems (pass rate "
                f"strictly between 0 and 1); {self.always} always solved, {self.never} never")


def edge_problems(cfg, backend, problems: Sequence[MathRecord], reward_fn, run_dir: Path,
                  pool=None) -> list[MathRecord]:
    """The training problems at the edge of `backend`'s policy (see module docstring), read
    back from `run_dir` when an earlier run of this stage chose them. Falls back to every
    candidate, with a notice, when none is at the edge."""
    path = Path(run_dir) / FILENAME
    if path.is_file():
        kept = [MathRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines()]
        notice(f"RL edge filter: {len(kept)} problems from {path}")
        return kept
    limit = cfg.edge_filter_problems or len(problems)
    candidates = list(problems[:limit])
    groups = sample_groups(backend.sampler(), candidates, mode=cfg.mode,
                           group_size=cfg.edge_filter_samples, temperature=cfg.temperature,
                           max_new_tokens=cfg.max_new_tokens, max_tool_calls=cfg.max_tool_calls,
                           seed=cfg.seed - 1, pool=pool)
    counts = []
    for group in groups:
        score_group(group, reward_fn)
        counts.append(sum(group.correct_G))
    keep = at_edge(counts, cfg.edge_filter_samples)
    kept = [p for p, k in zip(candidates, keep) if k]
    always = sum(c == cfg.edge_filter_samples for c in counts)
    stats = EdgeStats(len(candidates), len(kept), always, sum(c == 0 for c in counts))
    notice(stats.line())
    if not kept:
        notice("RL edge filter: no problem at the edge; training on every candidate")
        kept = candidates
    if backend.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in kept))
    return kept
