"""The configs of local training, built from the shared field groups of config_fields.py.

    LocalRunFields                 local stages: model, output dir, devices, checkpoints, LoRA
    SFTConfig   = LocalRunFields + DataFields + LoraFields + SFTFields + packing/schedule
                  (what the SFT stages read: sft.py)
    TrainConfig = SFTConfig + RLFields + use_vllm
                  (the `train.py` command line; `--stage full` runs SFT and RL)

Each SFT stage receives an `SFTConfig` (`sft_config(train_config)`), so it cannot read an RL
field by mistake; a field only RL reads (eval_steps, save_samples, rewards...) lives in
`RLFields`, and `train.py --stage cot|tir` rejects one that was set (`check_stage_fields`).
The Tinker config (tinker_config.py) and the RL algorithm's (rl/config.py) inherit the same
groups. A test checks that every field of every config is read somewhere outside its class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from aimo3_recipe.config_fields import (
    DataFields,
    EdgeFilterFields,
    LoraFields,
    PolicyUpdateFields,
    RewardFields,
    RLEvalFields,
    RolloutFields,
    SampleLogFields,
    SFTFields,
)
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig

STAGES = ("cot", "tir", "rl", "full")


@dataclass
class RLFields(RolloutFields, PolicyUpdateFields, RewardFields, RLEvalFields, SampleLogFields,
               EdgeFilterFields):
    """The RL stage's part of the `train.py` command line (the RL loop's own settings, e.g.
    its clip range, are in rl/config.py)."""

    # GRPOConfig's learning_rate, mode, batch_size and num_steps, renamed where the SFT stages
    # use the plain name (defaults read from GRPOConfig: one definition)
    rl_learning_rate: float = GRPOConfig.learning_rate  # RL learning rate
    rl_mode: str = GRPOConfig.mode  # RL rollouts: tir (the model may run Python) | cot
    rl_batch_size: int = GRPOConfig.batch_size  # RL: problems per step (x group_size rollouts)
    rl_steps: int = GRPOConfig.num_steps  # RL steps (--max-steps overrides)
    tis_cap: float = GRPOConfig.tis_cap  # RL: importance weight cap (0: off; 2 with bf16 vLLM)


# -- local stages ----------------------------------------------------------------------------
@dataclass
class LocalRunFields:
    stage: str = "cot"  # cot | tir | rl | full (full chains cot -> tir -> rl)
    base_model: str = "default"  # hub id, folder, .gguf file or 'default' (embedded SmolLM2-135M)
    output_dir: str = "./outputs"  # each stage writes <output_dir>/<stage>
    batch_size: int = 4  # per-device batch size
    gradient_accumulation_steps: int = 4  # optimizer step every N micro-batches
    use_lora: bool = True  # LoRA adapters instead of full fine-tuning
    lora_alpha: int = 128  # LoRA alpha
    quant_bits: int | None = None  # 4 or 8 for QLoRA (CUDA only)
    save_steps: int = 500  # checkpoint every N optimizer steps
    logging_steps: int = 10  # log metrics every N steps
    max_steps: int = -1  # stop after N optimizer steps (-1: run all epochs)
    resume: bool = True  # resume from the last checkpoint in the output dir when present
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    report_to: str = "none"  # comma list: none, tensorboard, wandb (metrics.jsonl always)


@dataclass
class SFTConfig(SFTFields, LoraFields, DataFields, LocalRunFields):
    """What the SFT stages (sft_cot.py, sft_tir.py via sft.py) read. Defaults are the recipe's
    (lr 2e-5, LoRA rank 64, max length 4096, 3 epochs)."""

    packing: bool = True  # pack examples into full sequences (kept separate in attention)
    pack_length: int = 0  # tokens per packed row (0: the longest example, at most max_seq_length)
    gradient_checkpointing: bool | None = None  # recompute activations (None: on with CUDA)
    save_total_limit: int = 2  # keep only the newest N checkpoints
    warmup_ratio: float = 0.03  # fraction of steps with linear LR warm-up


@dataclass
class PipelineFields:
    """`--stage full` only: the held-out comparison of the base model and every stage."""

    pipeline_eval_problems: int = 100  # held-out problems each model answers (0: no comparison)
    pipeline_sc: int = 4  # samples per problem for the SC@N column (0: greedy only)
    pipeline_eval_tokens: int = 384  # generation length of the comparison
    pipeline_story_problems: int = 0  # story problems per held-out part (tuning, locked); 0: none
    cot_max_samples: int = 0  # SFT-CoT examples in --stage full (0: max_samples); short where
    # CoT shows no gain (the CPU demo)
    rl_lora_rank: int = 0  # RL in --stage full trains a LoRA adapter of this rank (0: use_lora)


@dataclass
class TrainConfig(PipelineFields, RLFields, SFTConfig):
    """The config of `python -m aimo3_recipe.training.train`: the SFT stages' fields and the RL
    stage's (`--stage full` runs both). Defaults are the recipe's (SFT lr 2e-5, LoRA rank 64,
    max length 4096, 3 epochs; RL lr 1e-6, 16 rollouts per problem, temperature 0.7)."""

    use_vllm: bool | str = "auto"  # RL rollouts on vLLM: auto (where fast here) | true | false

    def __post_init__(self) -> None:
        from aimo3_recipe.utils.hardware import parse_use_vllm

        self.use_vllm = parse_use_vllm(self.use_vllm)  # True | False | "auto"; else an error


def rl_only_fields() -> list[str]:
    """TrainConfig fields that only the RL stage reads."""
    sft = {f.name for f in dataclasses.fields(SFTConfig)}
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in sft]


def check_stage_fields(config: TrainConfig, given: Collection[str] | None = None) -> None:
    """`--stage cot|tir` with an RL-only field set is an error: SFT would silently ignore it.
    `given` names the fields the user set (command line, YAML); None: those whose value
    differs from the default (the Python API)."""
    if config.stage not in ("cot", "tir"):
        return
    defaults = TrainConfig()
    rl_only = rl_only_fields()
    if given is None:
        set_rl = [n for n in rl_only if getattr(config, n) != getattr(defaults, n)]
    else:
        set_rl = [n for n in rl_only if n in given]
    if set_rl:
        flags = ", ".join("--" + n.replace("_", "-") for n in set_rl)
        raise ConfigError(
            f"{flags}: read by the RL stage only (--stage rl or full); --stage {config.stage} "
            "trains on supervised targets and logs loss only. Drop the flag, or evaluate the "
            f"SFT output with `aimo3 eval --model {config.output_dir}/{config.stage}/model`.")


def sft_config(config: SFTConfig) -> SFTConfig:
    """The SFT stages' part of a TrainConfig (an SFTConfig is returned as it is)."""
    if type(config) is SFTConfig:
        return config
    return SFTConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(SFTConfig)})
