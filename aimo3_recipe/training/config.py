"""The config tree of local training (`python -m aimo3_recipe.training.train`):

    TrainConfig                  run-wide: stage, base_model, output_dir, LoRA, device, dtype,
                                 report_to, resume, use_vllm (config_fields.LocalModelFields)
      sft: SFTConfig             the SFT stages (sft.py): data, optimisation, checkpoints
      rl: GRPOConfig             the RL stage (rl/config.py), with rl.loss: LossConfig
      pipeline: PipelineConfig   `--stage full`'s closing comparison

A setting is addressed by its path: `--sft.learning-rate 1e-4`, `--rl.group-size 16`, in YAML
`rl: {group_size: 16}`. The SFT stages read `sft` and the run-wide fields; the RL stage reads
`rl` (rl_math.rl_config), so SFT's save_steps or learning rate never become RL's.
`train.py --stage cot|tir` rejects an `rl.*` or `pipeline.*` setting (`check_stage_fields`).
The seed's flat flags (--max-samples, --save-samples, --eval-steps...) are ALIASES; the old
flat names of moved settings are errors naming the new path (config.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

from aimo3_recipe.config import flat_kwargs, get_path, leaf_paths
from aimo3_recipe.config_fields import DataFields, LocalModelFields, SFTFields
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig

STAGES = ("cot", "tir", "rl", "full")


@dataclass
class SFTConfig(SFTFields, DataFields):
    """The SFT stages (sft_cot.py, sft_tir.py via sft.py). Defaults are the recipe's (lr 2e-5,
    max length 4096, 3 epochs)."""

    cot_dataset: str | None = None  # CoT stage's data (None: numina_cot; 'default' model: synthetic)
    tir_dataset: str | None = None  # TIR stage's data (None: numina_tir; 'default' model: synthetic)
    batch_size: int = 4  # per-device batch size
    gradient_accumulation_steps: int = 4  # optimizer step every N micro-batches
    max_steps: int = -1  # stop after N optimizer steps (-1: run all epochs)
    save_steps: int = 500  # checkpoint every N optimizer steps
    logging_steps: int = 10  # log metrics every N steps
    save_total_limit: int = 2  # keep only the newest N checkpoints
    warmup_ratio: float = 0.03  # fraction of steps with linear LR warm-up
    packing: bool = True  # pack examples into full sequences (kept separate in attention)
    pack_length: int = 0  # tokens per packed row (0: the longest example, at most max_seq_length)
    gradient_checkpointing: bool | None = None  # recompute activations (None: on with CUDA)
    quant_bits: int | None = None  # 4 or 8 for QLoRA (CUDA only)


@dataclass
class PipelineConfig:
    """`--stage full` only: the held-out comparison of the base model and every stage."""

    eval_problems: int = 100  # held-out problems each model answers (0: no comparison)
    sc: int = 4  # samples per problem for the SC@N column (0: greedy only)
    eval_tokens: int = 384  # generation length of the comparison
    story_problems: int = 0  # story problems per held-out part (tuning, locked); 0: none
    cot_max_samples: int = 0  # SFT-CoT examples in --stage full (0: sft.max_samples); short
    # where CoT shows no gain (the CPU demo)
    rl_lora_rank: int = 0  # RL in --stage full trains a LoRA adapter of this rank (0: use_lora)


@flat_kwargs(leaves=False)
@dataclass
class TrainConfig(LocalModelFields):
    """The config of `python -m aimo3_recipe.training.train`. Defaults are the recipe's (SFT lr
    2e-5, LoRA rank 64, max length 4096, 3 epochs; RL lr 1e-6, 16 rollouts per problem,
    temperature 0.7)."""

    stage: str = "cot"  # cot | tir | rl | full (full chains cot -> tir -> rl)
    base_model: str = "default"  # hub id, folder, .gguf file or 'default' (embedded SmolLM2-135M)
    output_dir: str = "./outputs"  # each stage writes <output_dir>/<stage>
    sft: SFTConfig = field(default_factory=SFTConfig)  # the SFT stages (sft.*)
    rl: GRPOConfig = field(default_factory=GRPOConfig)  # the RL stage (rl.*, rl.loss.*)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)  # --stage full's comparison

    # the seed's flat flags, kept as aliases onto the tree
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {
        "max_samples": ("sft.max_samples", "rl.max_samples"),
        "dataset": ("sft.dataset", "rl.dataset"),  # every stage's data
        "seed": ("sft.seed", "rl.seed"),
        "save_samples": ("rl.save_samples",),
        "sample_save_rate": ("rl.sample_save_rate",),
        "samples_filename": ("rl.samples_filename",),
        "eval_steps": ("rl.eval_steps",),
        "eval_samples": ("rl.eval_samples",),
    }
    # flat names of earlier versions whose setting is now a path under another name
    RENAMED: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "rl_learning_rate": "rl.learning_rate", "rl_steps": "rl.num_steps", "rl_mode": "rl.mode",
        "rl_batch_size": "rl.batch_size", "tis_cap": "rl.loss.tis_cap",
        "epsilon_low": "rl.loss.epsilon_low", "epsilon_high": "rl.loss.epsilon_high",
        "pipeline_eval_problems": "pipeline.eval_problems", "pipeline_sc": "pipeline.sc",
        "pipeline_eval_tokens": "pipeline.eval_tokens",
        "pipeline_story_problems": "pipeline.story_problems",
        "max_steps": ("sft.max_steps", "rl.num_steps"), "rl_dataset": "rl.dataset",
    }


def rl_only_paths() -> list[str]:
    """TrainConfig settings that only the RL stage (or --stage full) reads."""
    return [p for p in leaf_paths(TrainConfig)
            if p.startswith(("rl.", "pipeline.")) or p == "use_vllm"]


def check_stage_fields(config: TrainConfig, given: Collection[str] | None = None) -> None:
    """`--stage cot|tir` with an RL-only setting is an error: SFT would silently ignore it.
    `given` names the paths the user set (command line, YAML); None: those whose value
    differs from the default (the Python API)."""
    if config.stage not in ("cot", "tir"):
        return
    defaults = TrainConfig()
    rl_only = rl_only_paths()
    if given is None:
        set_rl = [p for p in rl_only if get_path(config, p) != get_path(defaults, p)]
    else:  # an alias counts when all it sets is RL-only (--max-samples also sets sft's)
        set_rl = [p for p in given if p in rl_only or (
            p in TrainConfig.ALIASES and set(TrainConfig.ALIASES[p]) <= set(rl_only))]
    if set_rl:
        flags = ", ".join("--" + p.replace("_", "-") for p in set_rl)
        raise ConfigError(
            f"{flags}: read by the RL stage only (--stage rl or full); --stage {config.stage} "
            "trains on supervised targets and logs loss only. Drop the flag, or evaluate the "
            f"SFT output with `aimo3 eval --model {config.output_dir}/{config.stage}/model`.")


def sft_view(config: TrainConfig) -> dict:
    """What an SFT stage ran with, for its config.json: the run-wide fields and `sft` (the RL
    and pipeline sections are not its settings)."""
    import dataclasses

    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
           if f.name not in ("rl", "pipeline")}
    out["sft"] = dataclasses.asdict(config.sft)
    return out
