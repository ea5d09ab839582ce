"""The narrow interface between the GRPO loop and whatever trains the model.

The loop (loop.py) never touches a model: it asks a backend for a sampler, hands it padded
batches with advantages and masks, and tells it when to step, sync and save. The local
backend (local_backend.py: torch + peft + accelerate, rollouts on the transformers engine
sharing the live model or on vLLM with weights pushed in) and the Tinker backend implement
the same calls, so the algorithm exists once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from aimo3_recipe.inference.engine import Engine
from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.config import LossConfig


class Backend(Protocol):
    tokenizer: Any  # the policy's tokenizer (prompts are rendered and encoded with it)
    rank: int  # this process's rank (0 when not distributed)
    world_size: int  # processes training together (gradients are averaged over them)

    def sampler(self) -> Engine:
        """An engine sampling from the current policy (call again after `sync_sampler`)."""

    def logprobs(self, batch: RLBatch) -> Any:
        """The trainer's per-token log-probs of `batch` (B x L, no gradient): the 'old'
        policy of PPO epochs after the first."""

    def forward_backward(self, batch: RLBatch, *, old_logprobs: Any, num_tokens: float,
                         loss: LossConfig) -> dict[str, float]:
        """Add the gradient of `rl.loss.policy_loss` with the `rl.loss` settings on `batch`
        (token-level, divided by `num_tokens`, the trained tokens of the whole optimizer
        step); return its metrics. The Tinker backend trains with the service's loss, made
        equal to ours by what it sends, and refuses settings it cannot honour (docs/rl.md)."""

    def optim_step(self) -> dict[str, float]:
        """Apply (clipped) accumulated gradients and zero them; return e.g. the grad norm."""

    def sync_sampler(self) -> dict[str, float]:
        """Make the sampler use the new weights (a no-op where it shares the live model)."""

    def sampler_weights(self) -> Any:
        """Off-policy rollouts (rl/overlap.py) only: a copy of the policy's weights now, in
        the form `detached_sampler` loads (called on the training thread)."""

    def detached_sampler(self, weights: Any) -> Engine:
        """Off-policy rollouts only: an engine sampling from `weights` that never touches the
        live model, so it can generate while training runs (called on the rollout thread)."""

    def reduce(self, value: float, op: str) -> float:
        """`value` combined over ranks, op "sum" or "max" (a collective: every rank calls it;
        the value itself with one process)."""

    def save(self, path: Path) -> None:
        """Write everything a resume needs (weights or adapter, optimizer state) to `path`."""

    def load(self, path: Path) -> None:
        """Restore what `save` wrote."""
