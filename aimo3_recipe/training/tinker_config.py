"""Config shared by the Tinker SFT and RL entry points (`key=value` on their command lines).

Built from the same field groups as the local stages (config_fields.py, training/config.py):
data, LoRA rank, SFT and RL settings have one definition each, with the same names and
defaults, so a recipe moves between local and Tinker training unchanged. Only what is
Tinker's own is defined here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimo3_recipe.config_fields import DataFields, LoraFields, SFTFields
from aimo3_recipe.training.config import RLFields


@dataclass
class TinkerTrainConfig(RLFields, SFTFields, LoraFields, DataFields):
    model_name: str = "Qwen/Qwen3-8B"  # base model served by Tinker
    stage: str = "cot"  # cot | tir (SFT); the RL entry point ignores it
    log_dir: str = "./outputs/tinker"  # metrics.jsonl, checkpoints, samples
    batch_size: int = 32  # problems (RL) or examples (SFT) per optimizer step
    verbose: bool = False  # print loss metrics every step
    wandb_project: str | None = None  # enables W&B logging
    wandb_name: str | None = None  # W&B run name
    base_url: str | None = None  # Tinker service URL (None: the SDK default)
