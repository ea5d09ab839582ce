"""The GRPO algorithm's settings: one definition, read by the loop whatever the backend
(local torch: `training.rl_math.RLMathConfig`; Tinker: `training.tinker_rl_math`)."""

from __future__ import annotations

from dataclasses import dataclass

from aimo3_recipe.config_fields import (
    DataFields,
    PolicyUpdateFields,
    RewardFields,
    RLEvalFields,
    RolloutFields,
    SampleLogFields,
)
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.vllm_config import RolloutVLLMConfig, check_vllm_config


@dataclass
class GRPOConfig(RolloutFields, PolicyUpdateFields, RewardFields, RLEvalFields, SampleLogFields,
                 DataFields, RolloutVLLMConfig):
    """Inherited (config_fields.py, shared with the train CLI and Tinker): group_size,
    temperature, max_new_tokens; mini_batch_size, ppo_epochs; correct/incorrect/format_reward;
    eval_steps, eval_samples; save_samples, sample_save_rate, samples_filename; dataset,
    max_samples, seed (data order; step k samples with seed + k). The vLLM rollout engine's
    group (inference/vllm_config.py, RL defaults: 0.3 of the GPU, 4096 tokens, sleep mode):
    tensor_parallel_size, data_parallel_size, quantization, kv_cache_dtype,
    gpu_memory_utilization, max_model_len, enable_sleep_mode."""

    # sampling
    mode: str = "tir"  # cot (plain chain of thought) | tir (the model may run Python)
    max_tool_calls: int = 4  # TIR: code blocks executed per rollout
    # optimisation
    learning_rate: float = 1e-6  # RL learning rate (recipe default)
    batch_size: int = 8  # problems per step (batch_size * group_size rollouts)
    gradient_accumulation_steps: int = 1  # micro-batches per mini-batch (memory, same result)
    num_steps: int = 100  # RL steps (each: sample, grade, update)
    max_grad_norm: float = 1.0  # gradient clipping
    # loss (rl/loss.py)
    epsilon_low: float = 0.2  # clip ratio below 1 - epsilon_low (negative advantages)
    epsilon_high: float = 0.28  # clip ratio above 1 + epsilon_high (clip-higher, DAPO)
    tis_cap: float = 0.0  # truncated importance weight cap (0: off; e.g. 2.0 for bf16 vLLM)
    scale_by_std: bool = False  # divide advantages by the group std (paper; invites format hacks)
    # logging, evaluation, checkpoints
    logging_steps: int = 1  # a summary line on stderr every N steps (metrics.jsonl: every step)
    save_steps: int = 10  # checkpoint every N steps (and at the end)

    def __post_init__(self) -> None:
        check_vllm_config(self)
        if self.mode not in ("cot", "tir"):
            raise ConfigError(f"mode must be cot or tir; got {self.mode!r}")
        for name in ("group_size", "batch_size", "ppo_epochs", "num_steps",
                     "gradient_accumulation_steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (advantages compare rollouts of one "
                              f"problem); got {self.group_size}")
        if not 0.0 <= self.sample_save_rate <= 1.0:
            raise ConfigError(f"sample_save_rate must be in [0, 1]; got {self.sample_save_rate}")
