"""Rollouts -> the padded tensors `loss.token_logprobs` and `loss.policy_loss` take.

Each row is prompt_ids + tokens, right-padded to the longest row. The layout is full
sequences (`_B_L`), so a trainer log-prob at [b, t] scores exactly the token the sampler
produced at [b, t]: the loss mask is 0 on the prompt, on tool-output / forced tokens and on
padding; the sampler's log-probs sit at their tokens' positions (0 elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from aimo3_recipe.rl.types import Rollout, RolloutGroup


@dataclass
class RLBatch:
    input_ids_B_L: torch.Tensor  # long: prompt + rollout tokens, right-padded with pad_token_id
    attention_mask_B_L: torch.Tensor  # long: 1 on prompt and rollout tokens, 0 on padding
    loss_mask_B_L: torch.Tensor  # float: 1 on tokens the model sampled, else 0
    sampler_logprobs_B_L: torch.Tensor  # float: the sampler's log-prob at each sampled token
    advantages_B: torch.Tensor  # float: one per row

    @property
    def num_tokens(self) -> int:
        """Trained tokens in the batch (the DAPO loss's denominator)."""
        return int(self.loss_mask_B_L.sum().item())

    def to(self, device: torch.device | str) -> RLBatch:
        return RLBatch(*(t.to(device) for t in (self.input_ids_B_L, self.attention_mask_B_L,
                                               self.loss_mask_B_L, self.sampler_logprobs_B_L,
                                               self.advantages_B)))


def flatten_groups(groups: list[RolloutGroup]) -> tuple[list[Rollout], list[float]]:
    """All rollouts of the groups and their advantages, in order (groups must be scored and
    have advantages: `advantages.assign_advantages`)."""
    rollouts: list[Rollout] = []
    advantages: list[float] = []
    for group in groups:
        if len(group.advantages_G) != group.size:
            raise ValueError(
                f"flatten_groups: group for problem {group.problem[:60]!r} has no advantages; "
                "call advantages.assign_advantages first"
            )
        rollouts.extend(group.rollouts)
        advantages.extend(group.advantages_G)
    return rollouts, advantages


def make_batch(rollouts: list[Rollout], advantages: list[float], pad_token_id: int) -> RLBatch:
    """Pad rollouts into one batch (see module docstring for the layout)."""
    if len(rollouts) != len(advantages):
        raise ValueError(f"make_batch: {len(rollouts)} rollouts but {len(advantages)} advantages")
    if not rollouts:
        raise ValueError("make_batch: no rollouts (every group was dropped?)")
    L = max(len(r.prompt_ids) + len(r.tokens) for r in rollouts)
    B = len(rollouts)
    ids = torch.full((B, L), pad_token_id, dtype=torch.long)
    attn = torch.zeros(B, L, dtype=torch.long)
    loss_mask = torch.zeros(B, L)
    sampler = torch.zeros(B, L)
    for b, r in enumerate(rollouts):
        p, n = len(r.prompt_ids), len(r.tokens)
        ids[b, : p + n] = torch.tensor(r.prompt_ids + r.tokens, dtype=torch.long)
        attn[b, : p + n] = 1
        loss_mask[b, p : p + n] = torch.tensor(r.mask, dtype=torch.float32)
        sampler[b, p : p + n] = torch.tensor(r.sampler_logprobs, dtype=torch.float32)
    sampler *= loss_mask  # a sampler log-prob on a masked token is never used; keep it 0
    return RLBatch(ids, attn, loss_mask, sampler, torch.tensor(advantages, dtype=torch.float32))


def token_budget_parts(idx: list[int], lengths: Mapping[int, int] | Sequence[int],
                       max_tokens: int) -> list[list[int]]:
    """Split rollouts `idx` (row lengths `lengths[i]`, prompt + completion) into micro-batches
    whose padded size, rows x longest row, is at most `max_tokens`; a row longer than the
    budget goes alone. Rows are taken longest first, so each micro-batch holds rows of similar
    length (less padding). The split never changes the gradient: the loss is a sum over
    tokens divided by the step's token count, whatever the micro-batches."""
    if max_tokens <= 0:
        return [list(idx)] if idx else []
    parts: list[list[int]] = []
    for i in sorted(idx, key=lambda i: -lengths[i]):
        if parts and (len(parts[-1]) + 1) * lengths[parts[-1][0]] <= max_tokens:
            parts[-1].append(i)
        else:
            parts.append([i])
    return parts
