"""The config of the Tinker entry points (`key=value` on their command lines, parsed by chz).

    TinkerTrainConfig     Tinker's own: model, log_dir, connection, retries, export; lora_rank
      sft: SFTConfig      the SFT entry point (tinker_sft_math.py): the local SFT section
      rl: GRPOConfig      the RL entry point (tinker_rl_math.py): the local RL section, rl.loss

The sections are the local stages' (training/config.py, rl/config.py), so a recipe moves
between local and Tinker training unchanged: `rl.group_size=16` here is `--rl.group-size 16`
there. Only what is Tinker's own is defined here. Where a Tinker entry point cannot honour a
setting of its section (e.g. sft.packing, rl.loss.beta) it says so and stops.

The seed's flat options (`batch_size=`, `group_size=`, `max_samples=`, `save_samples=`) are
ALIASES onto the sections; old flat names (`rl_steps=`, `save_every=`, `loss_fn=`) are errors
naming the new path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from aimo3_recipe.config import flat_kwargs
from aimo3_recipe.config_fields import LoraFields
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.training.config import SFTConfig

# Tinker's defaults where they differ from the local sections': one optimizer step of the
# service takes `batch_size` examples (no per-device micro-batches), steps are costly, so
# state is saved often; a constant learning rate (the service has no schedule: no warm-up).
SECTION_DEFAULTS: dict[str, Any] = {
    "sft.batch_size": 32, "sft.gradient_accumulation_steps": 1, "sft.save_steps": 10,
    "sft.warmup_ratio": 0.0, "sft.logging_steps": 1, "rl.batch_size": 32,
}


def _defaults(prefix: str) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in SECTION_DEFAULTS.items() if k.startswith(prefix)}


def _tinker_sft() -> SFTConfig:
    return SFTConfig(**_defaults("sft."))


def _tinker_rl() -> GRPOConfig:
    return GRPOConfig(**_defaults("rl."))


@flat_kwargs(leaves=False)
@dataclass
class TinkerTrainConfig(LoraFields):
    model_name: str = "Qwen/Qwen3-8B"  # base model served by Tinker
    stage: str = "cot"  # cot | tir (SFT); the RL entry point ignores it
    log_dir: str = "./outputs/tinker"  # metrics.jsonl, checkpoints, samples
    verbose: bool = False  # print loss metrics every step
    wandb_project: str | None = None  # enables W&B logging
    wandb_name: str | None = None  # W&B run name
    base_url: str | None = None  # Tinker service URL (None: the SDK default)
    init_state: str | None = None  # tinker:// state to start from (e.g. the SFT run's; weights only)
    export: bool = True  # at the end: LoRA weights -> {log_dir}/adapter (PEFT) and model/ (merged)
    retry_attempts: int = 8  # attempts per request on network errors, timeouts, 429 and 5xx
    request_timeout: float = 300.0  # seconds one request attempt may take
    retry_seconds: float = 900.0  # give up on a request (the run stops, resumable) after this
    sft: SFTConfig = field(default_factory=_tinker_sft)  # the SFT entry point (sft.*)
    rl: GRPOConfig = field(default_factory=_tinker_rl)  # the RL entry point (rl.*, rl.loss.*)

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {
        "max_samples": ("sft.max_samples", "rl.max_samples"),
        "batch_size": ("sft.batch_size", "rl.batch_size"),
        "seed": ("sft.seed", "rl.seed"),
        "group_size": ("rl.group_size",),
        "save_samples": ("rl.save_samples",),
    }
    RENAMED: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "rl_learning_rate": "rl.learning_rate", "rl_steps": "rl.num_steps", "rl_mode": "rl.mode",
        "rl_batch_size": "rl.batch_size", "save_every": ("sft.save_steps", "rl.save_steps"),
        "loss_fn": "rl.loss.clip", "tis_cap": "rl.loss.tis_cap",
    }
