"""The config of `python -m aimo3_recipe.training.train` (every stage reads its part)."""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("cot", "tir", "rl", "full")


@dataclass
class TrainConfig:
    """Defaults are the recipe's (SFT lr 2e-5, LoRA rank 64, max length 4096, 3 epochs;
    RL lr 1e-6, 16 rollouts per problem, temperature 0.7)."""

    stage: str = "cot"  # cot | tir | rl | full (full chains cot -> tir -> rl)
    base_model: str = "default"  # hub id, local folder, .gguf file or 'default' (embedded SmolLM2-135M)
    output_dir: str = "./outputs"  # each stage writes <output_dir>/<stage>
    dataset: str | None = None  # dataset name or local file; None = the stage's default
    max_samples: int | None = None  # cap on training examples
    seed: int = 42  # seeds data order, init and sampling
    # SFT
    learning_rate: float = 2e-5  # SFT learning rate
    num_epochs: float = 3.0  # SFT epochs
    max_seq_length: int = 4096  # longer examples are truncated
    batch_size: int = 4  # per-device batch size
    gradient_accumulation_steps: int = 4  # optimizer step every N micro-batches
    use_lora: bool = True  # LoRA adapters instead of full fine-tuning
    lora_rank: int = 64  # LoRA rank
    lora_alpha: int = 128  # LoRA alpha
    quant_bits: int | None = None  # 4 or 8 for QLoRA (CUDA only)
    packing: bool = True  # pack examples into full sequences (kept separate in attention)
    pack_length: int = 0  # tokens per packed row (0: the longest example, at most max_seq_length)
    gradient_checkpointing: bool | None = None  # recompute activations to save memory (None: on with CUDA)
    save_total_limit: int = 2  # keep only the newest N checkpoints
    warmup_ratio: float = 0.03  # fraction of steps with linear LR warm-up
    save_steps: int = 500  # checkpoint every N optimizer steps
    logging_steps: int = 10  # log metrics every N steps
    max_steps: int = -1  # stop after N optimizer steps (-1: run all epochs)
    resume: bool = True  # resume from the last checkpoint in the output dir when present
    # RL
    rl_learning_rate: float = 1e-6  # RL learning rate
    group_size: int = 16  # rollouts per problem (GRPO group)
    temperature: float = 0.7  # rollout sampling temperature
    max_new_tokens: int = 1024  # rollout / eval generation length
    correct_reward: float = 1.0  # reward for a verified-correct answer
    incorrect_reward: float = -0.5  # reward for a wrong or missing answer
    format_reward: float = 0.1  # bonus for a proper \boxed{} answer
    # evaluation & samples (for the RL stage; SFT does not evaluate yet and says so)
    eval_steps: int = 0  # evaluate every N steps (0: only at the end)
    eval_samples: int = 50  # problems per evaluation
    save_samples: bool = False  # write a random subset of samples to samples.jsonl
    sample_save_rate: float = 0.01  # fraction of samples saved
    samples_filename: str = "samples.jsonl"  # file name for saved samples
    # runtime
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    report_to: str = "none"  # comma list: none, tensorboard, wandb (metrics.jsonl always)
    use_vllm: bool = False  # vLLM for rollouts / evaluation
