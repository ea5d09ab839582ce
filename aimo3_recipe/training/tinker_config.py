"""Config shared by the Tinker SFT and RL entry points (`key=value` on their command lines)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TinkerTrainConfig:
    model_name: str = "Qwen/Qwen3-8B"  # base model served by Tinker
    stage: str = "cot"  # cot | tir (SFT) ; the RL entry point ignores it
    log_dir: str = "./outputs/tinker"  # metrics.jsonl, checkpoints, samples
    learning_rate: float = 2e-5  # SFT default; RL uses 1e-6 unless set
    lora_rank: int = 64  # LoRA rank of the Tinker training client
    max_samples: int | None = None  # cap on training problems
    batch_size: int = 32  # problems per step
    group_size: int = 16  # RL rollouts per problem
    max_tokens: int = 4096  # sampling / sequence length
    temperature: float = 0.7  # RL sampling temperature
    verbose: bool = False  # print loss metrics every step
    wandb_project: str | None = None  # enables W&B logging
    wandb_name: str | None = None  # W&B run name
    save_samples: bool = False  # write sampled responses to samples.jsonl
    base_url: str | None = None  # Tinker service URL (None: the SDK default)
