"""Groups of config fields, each defined once, that the sections of the config tree are
built from (config.py explains the tree):

    DataFields, SFTFields                  the `sft` section (training/config.py: SFTConfig)
    DataFields, RolloutFields,             the `rl` section (rl/config.py: GRPOConfig), held by
    PolicyUpdateFields, RewardFields,      train.py's TrainConfig, RLMathConfig and the Tinker
    RLEvalFields, SampleLogFields,         config alike
    EdgeFilterFields
    LoraFields, LocalModelFields           run-wide fields at the top of the entry points

A section is a dataclass inheriting the groups it reads plus its own fields, so a setting has
one name, default and comment wherever it appears (`--rl.group-size` locally,
`rl.group_size=` on Tinker). This module imports neither rl/ nor training/: the RL algorithm and
the entry points both build on it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataFields:
    dataset: str | None = None  # dataset name or local file (None: the stage's own / the recipe's)
    max_samples: int | None = None  # cap on training examples / problems
    seed: int = 42  # seeds data order, init and sampling


@dataclass
class LoraFields:
    lora_rank: int = 64  # LoRA rank


@dataclass
class LocalModelFields(LoraFields):
    """Run-wide settings of the local entry points (train.py, RLMathConfig)."""

    use_lora: bool = True  # LoRA adapters instead of full fine-tuning
    lora_alpha: int = 128  # LoRA alpha
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (the trainer's)
    report_to: str = "none"  # comma list: none, tensorboard, wandb (metrics.jsonl always)
    resume: bool = True  # resume from the newest checkpoint in the output folder when present
    use_vllm: bool | str = "auto"  # RL rollouts on vLLM: auto (where fast here) | true | false

    def __post_init__(self) -> None:
        from aimo3_recipe.utils.hardware import parse_use_vllm

        self.use_vllm = parse_use_vllm(self.use_vllm)  # True | False | "auto"; else an error


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
    max_tokens_per_microbatch: int = 0  # cap on padded tokens per forward/backward (0: none)


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
