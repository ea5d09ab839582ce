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
    # Tinker only: the RL loss, checkpoints, export, retries
    loss_fn: str = "ppo"  # RL loss on the service: ppo (clipped) | importance_sampling
    save_every: int = 10  # save state + optimizer every N steps (and at the end); a rerun with
    # the same log_dir resumes from the newest (a new log_dir starts afresh)
    init_state: str | None = None  # tinker:// state to start from (e.g. the SFT run's; weights only)
    export: bool = True  # at the end: LoRA weights -> {log_dir}/adapter (PEFT) and model/ (merged)
    retry_attempts: int = 8  # attempts per request on network errors, timeouts, 429 and 5xx
    request_timeout: float = 300.0  # seconds one request attempt may take
    retry_seconds: float = 900.0  # give up on a request (the run stops, resumable) after this
