"""Groups of config fields that more than one entry point has, each defined once.

    DataFields, LoraFields, SFTFields      local SFT (training/config.py), Tinker SFT
    RolloutFields, PolicyUpdateFields,     local RL (training/config.py, rl/config.py),
    RewardFields, RLEvalFields,            Tinker RL (training/tinker_config.py)
    SampleLogFields

A config is a dataclass that inherits the groups it reads plus its own fields, so the same
setting has the same name, default and comment everywhere (`--group-size` locally,
`group_size=` on Tinker). This module imports nothing of ours: the RL algorithm (rl/) and the
entry points (training/) both build on it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataFields:
    dataset: str | None = None  # dataset name or local file; None = the stage's default
    max_samples: int | None = None  # cap on training examples / problems
    seed: int = 42  # seeds data order, init and sampling


@dataclass
class LoraFields:
    lora_rank: int = 64  # LoRA rank


@dataclass
class SFTFields:
    learning_rate: float = 2e-5  # SFT learning rate
    num_epochs: float = 3.0  # SFT epochs
    max_seq_length: int = 4096  # longer examples are truncated


@dataclass
class RolloutFields:
    group_size: int = 16  # rollouts per problem (the GRPO group)
    temperature: float = 0.7  # rollout sampling temperature
    max_new_tokens: int = 1024  # model tokens per rollout (all TIR turns together)


@dataclass
class PolicyUpdateFields:
    mini_batch_size: int = 0  # rollouts per optimizer step (0: all of the step's: on-policy)
    ppo_epochs: int = 1  # passes over a step's rollouts


@dataclass
class RewardFields:
    correct_reward: float = 1.0  # reward for a verified-correct answer
    incorrect_reward: float = -0.5  # reward for a wrong, missing or truncated answer
    format_reward: float = 0.1  # bonus for a proper closed \boxed{} in the model's own text


@dataclass
class RLEvalFields:
    eval_steps: int = 0  # held-out evaluation every N steps (0: before and after only)
    eval_samples: int = 50  # held-out problems per evaluation (greedy)


@dataclass
class SampleLogFields:
    save_samples: bool = False  # write sampled rollouts to samples.jsonl
    sample_save_rate: float = 0.01  # fraction of rollouts written there
    samples_filename: str = "samples.jsonl"  # file name for saved samples


@dataclass
class EdgeFilterFields:
    """Local RL: train on problems at the edge of the start policy's ability (rl/edge_filter.py)."""

    edge_filter_samples: int = 0  # before RL, rollouts per candidate problem (0: no filter)
    edge_filter_problems: int = 0  # candidates the filter tries (0: every training problem)
