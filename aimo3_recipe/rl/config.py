"""The GRPO algorithm's settings: the `rl` section of every entry point's config
(train.py's `TrainConfig.rl`, `training.rl_math.RLMathConfig.rl`, the Tinker config's `rl`),
read by the loop whatever the backend. The loss's settings are one typed section inside it,
`rl.loss` (`LossConfig`), which both backends read (rl/local_backend.py, rl/tinker_backend.py)
and whose defaults `rl.loss.policy_loss` takes: they are written here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aimo3_recipe.config_fields import (
    DataFields,
    EdgeFilterFields,
    PolicyUpdateFields,
    RewardFields,
    RLEvalFields,
    RolloutFields,
    SampleLogFields,
)
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.vllm_config import RolloutVLLMConfig

RATIO_AGAINST = ("trainer", "sampler")


@dataclass
class LossConfig:
    """The policy loss (rl/loss.py), the same on both backends (docs/rl.md: what differs)."""

    epsilon_low: float = 0.2  # clip ratio below 1 - epsilon_low (negative advantages)
    epsilon_high: float = 0.28  # clip ratio above 1 + epsilon_high (clip-higher, DAPO)
    clip: bool = True  # PPO clip (false: the unclipped importance-sampled policy gradient)
    tis_cap: float = 0.0  # truncated importance weight cap (0: off; e.g. 2.0 for bf16 vLLM)
    ratio_against: str = "trainer"  # on-policy ratio's denominator: trainer (ratio 1) | sampler
    beta: float = 0.0  # KL(policy || reference) coefficient (0: no KL term; needs LoRA locally)

    def __post_init__(self) -> None:
        if self.ratio_against not in RATIO_AGAINST:
            raise ConfigError(f"rl.loss.ratio_against must be one of {RATIO_AGAINST}; got "
                              f"{self.ratio_against!r}")
        for name in ("epsilon_low", "epsilon_high", "tis_cap", "beta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"rl.loss.{name} must be >= 0; got {getattr(self, name)}")


@dataclass
class GRPOConfig(RolloutFields, PolicyUpdateFields, RewardFields, RLEvalFields, SampleLogFields,
                 DataFields, EdgeFilterFields):
    """The RL stage (GRPO): sampling, optimisation, rewards, evaluation, checkpoints.

    Fields from config_fields.py's groups: group_size, temperature, max_new_tokens;
    mini_batch_size, ppo_epochs, max_tokens_per_microbatch; correct/incorrect/format_reward;
    eval_steps, eval_samples; save_samples, sample_save_rate, samples_filename; dataset,
    max_samples, seed (data order; step k samples with seed + k); edge_filter_samples,
    edge_filter_problems. The loss is the `rl.loss` section; the local rollout engine's
    settings the `rl.vllm` section (inference/vllm_config.py's group with RL's defaults: 0.3
    of the GPU, 4096 tokens, sleep mode)."""

    # sampling
    mode: str = "tir"  # cot (plain chain of thought) | tir (the model may run Python)
    max_tool_calls: int = 4  # TIR: code blocks executed per rollout
    # optimisation
    learning_rate: float = 1e-6  # RL learning rate (recipe default)
    batch_size: int = 8  # problems per step (batch_size * group_size rollouts)
    gradient_accumulation_steps: int = 1  # micro-batches per mini-batch (memory, same result)
    num_steps: int = 100  # RL steps (each: sample, grade, update)
    max_grad_norm: float = 1.0  # gradient clipping
    scale_by_std: bool = False  # divide advantages by the group std (paper; invites format hacks)
    # memory of the local backend (the same result; the Tinker service manages its own)
    gradient_checkpointing: bool | None = None  # recompute activations (None: on with CUDA)
    logprob_chunk_tokens: int = 1024  # positions per LM-head chunk (logits never all at once)
    entropy_sample_tokens: int = 256  # trained positions per micro-batch for train/entropy (0: all)
    # rollout scheduling (rl/overlap.py, rl/dynamic_sampling.py)
    max_steps_off_policy: int = 0  # k > 0: sample step n+1 while step n trains (weights k old)
    dynamic_sampling: bool = False  # DAPO: draw more problems until batch_size groups vary
    max_sampling_rounds: int = 3  # dynamic sampling: draws per step at most (the first included)
    drop_solved_problems: bool = False  # dynamic sampling: skip problems whose group never varied
    # logging, evaluation, checkpoints (the RL stage's own: SFT's are sft.*)
    logging_steps: int = 1  # a summary line on stderr every N steps (metrics.jsonl: every step)
    save_steps: int = 10  # checkpoint every N steps (and at the end)
    loss: LossConfig = field(default_factory=LossConfig)  # the policy loss (rl.loss.*)
    vllm: RolloutVLLMConfig = field(default_factory=RolloutVLLMConfig)  # rollouts on vLLM

    def __post_init__(self) -> None:
        if self.mode not in ("cot", "tir"):
            raise ConfigError(f"rl.mode must be cot or tir; got {self.mode!r}")
        for name in ("group_size", "batch_size", "ppo_epochs", "num_steps",
                     "gradient_accumulation_steps", "max_new_tokens", "save_steps",
                     "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rl.{name} must be >= 1; got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError(f"rl.group_size must be >= 2 (advantages compare rollouts of one "
                              f"problem); got {self.group_size}")
        if self.max_steps_off_policy < 0:
            raise ConfigError(f"rl.max_steps_off_policy must be >= 0 (0: on-policy); got "
                              f"{self.max_steps_off_policy}")
        if self.max_sampling_rounds < 1:
            raise ConfigError(f"rl.max_sampling_rounds must be >= 1 (1: no refill); got "
                              f"{self.max_sampling_rounds}")
        if self.drop_solved_problems and not self.dynamic_sampling:
            raise ConfigError("rl.drop_solved_problems needs dynamic_sampling=True (dropped "
                              "problems are replaced by fresh draws)")
        if self.edge_filter_samples == 1 or self.edge_filter_samples < 0:
            raise ConfigError(f"rl.edge_filter_samples must be 0 (off) or >= 2 (a pass rate "
                              f"strictly between 0 and 1 needs two rollouts); got "
                              f"{self.edge_filter_samples}")
        if not 0.0 <= self.sample_save_rate <= 1.0:
            raise ConfigError(f"rl.sample_save_rate must be in [0, 1]; got "
                              f"{self.sample_save_rate}")
