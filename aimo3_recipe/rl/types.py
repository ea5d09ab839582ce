"""The data RL passes around: one rollout, and one problem's group of rollouts.

A `Rollout` is token-exact: `prompt_ids + tokens` is exactly the context the sampler saw (a
TIR continuation is prompt + sampled ids + tokenised tool output, never a re-tokenised
transcript), so the trainer's log-probs line up with `sampler_logprobs` token by token and
`mask` says which tokens the loss may train (1 = sampled by the model, 0 = tool output or
forced). `RolloutGroup` carries one problem's G rollouts plus what the algorithm computes
about them (`_G`: one entry per group member), filled by `rewards.score_group` and
`advantages.assign_advantages`. `StepRollouts` is one step's worth of groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aimo3_recipe.inference.finish_reason import TRUNCATED, is_truncated

# finish reasons of a rollout cut off by a limit rather than finished (inference/finish_reason.py
# says which and why): they get the incorrect reward without grading
TRUNCATED_REASONS = TRUNCATED


@dataclass
class Rollout:
    prompt_ids: list[int]  # the rendered prompt the rollout started from
    tokens: list[int]  # everything after the prompt: sampled tokens and tool-output tokens
    mask: list[int]  # per token: 1 = sampled by the model (trained), 0 = tool output / forced
    sampler_logprobs: list[float]  # per token: the sampler's log-prob (0.0 where mask is 0)
    text: str  # the full transcript after the prompt (model text and tool output)
    model_text: str  # what the model wrote (tool output left out): the reward grades this
    finish_reason: str = "stop"  # an inference.finish_reason.FinishReason value
    num_tool_calls: int = 0  # code blocks executed
    num_tool_errors: int = 0  # code blocks that raised, timed out or crashed
    tool_seconds: float = 0.0  # sandbox wall clock of its code blocks

    def __post_init__(self) -> None:
        # a length mismatch would silently shift every log-prob against its token
        n = len(self.tokens)
        if len(self.mask) != n or len(self.sampler_logprobs) != n:
            raise ValueError(
                f"Rollout: tokens, mask and sampler_logprobs must have one entry per token; got "
                f"{n} tokens, {len(self.mask)} mask entries, {len(self.sampler_logprobs)} "
                "log-probs (build it with Rollout.from_tir or pad the log-probs with 0.0)"
            )

    @property
    def truncated(self) -> bool:
        """Cut off by a limit before the model finished (finish_reason.is_truncated)."""
        return is_truncated(self.finish_reason)

    @property
    def num_model_tokens(self) -> int:
        """Tokens the model sampled (the ones the loss trains)."""
        return sum(self.mask)

    @classmethod
    def from_tir(cls, result: Any) -> Rollout:
        """From an `inference.tir_executor.TIRResult` (duck-typed, so this module needs no
        inference import). Raises if the engine returned no log-probs: the loss needs them."""
        if result.logprobs is None:
            raise ValueError(
                "Rollout.from_tir: the TIR result has no sampler log-probs; sample with "
                "SamplingConfig(logprobs=True)"
            )
        return cls(
            prompt_ids=list(result.prompt_ids),
            tokens=list(result.token_ids),
            mask=list(result.mask),
            sampler_logprobs=list(result.logprobs),
            text=result.text,
            model_text=result.model_text,
            finish_reason=result.finish_reason,
            num_tool_calls=result.num_code_calls,
            num_tool_errors=result.num_code_errors,
            tool_seconds=getattr(result, "tool_seconds", 0.0),
        )


@dataclass
class RolloutGroup:
    problem: str  # the problem statement (AIMO mode reads a modulus from it)
    answer: str  # the ground-truth final answer
    rollouts: list[Rollout]  # G rollouts of the same prompt
    # filled by rewards.score_group
    rewards_G: list[float] = field(default_factory=list)  # scalar reward per rollout
    correct_G: list[bool] = field(default_factory=list)  # answer verified equal
    boxed_G: list[bool] = field(default_factory=list)  # earned the format bonus
    extracted_G: list[str | None] = field(default_factory=list)  # the graded answer
    grader_status_G: list[str] = field(default_factory=list)  # ok | timeout | too_complex | error
    # filled by advantages.assign_advantages
    advantages_G: list[float] = field(default_factory=list)  # one per rollout (0 if dropped)
    informative: bool = True  # correctness varies within the group (else dropped from the loss)
    # steps whose updates the sampler's weights held (step n on-policy: n; k steps stale: n - k)
    weight_version: int = 0

    @property
    def size(self) -> int:
        return len(self.rollouts)


@dataclass
class StepRollouts:
    """What one step trains on: every group sampled for it (logged), the groups kept for the
    loss, and the counts and seconds of sampling them (rl/loop.py `sample_step`)."""

    groups: list[RolloutGroup]  # every group sampled (refills included), scored, with advantages
    kept: list[RolloutGroup]  # the groups the loss trains on
    metrics: dict[str, float]  # groups/*, sampling/* counts and time/generation|grading
    weight_version: int = 0  # the weights that sampled them (see RolloutGroup.weight_version)
