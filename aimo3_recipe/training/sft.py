"""Supervised fine-tuning shared by the CoT and TIR stages, on TRL's SFTTrainer.

    records -> renderer (tokens + loss masks) -> [packing] -> SFTTrainer -> checkpoints
            -> final model (LoRA merged) + adapter

Our layer only decides things TRL cannot know: which solution each stage trains on and which
tokens carry loss (the renderer's masks: assistant tokens only, TIR tool output masked), a
packing layout that keeps examples apart for the attention implementation in use
(`packing.py`), where outputs go (`checkpoint.py`), and metrics.jsonl. TRL receives
pre-tokenized `input_ids`/`labels` and skips its own preparation, so it never re-tokenizes.

Devices: CUDA, MPS, CPU single-process; multi-GPU through `accelerate launch` with the
configs in `configs/accelerate/` (DDP, FSDP, DeepSpeed ZeRO-3): the same code, since the
Trainer reads the distributed setup from the environment. QLoRA (4/8-bit) needs CUDA.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.training.checkpoint import last_checkpoint, save_final, stage_dirs
from aimo3_recipe.training.config import TrainConfig, sft_view
from aimo3_recipe.utils.notice import notice

MODES = ("cot", "tir")


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _distributed_sharding() -> str | None:
    """'fsdp' / 'deepspeed' when `accelerate launch` set one up, else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "deepspeed"
    return None


def validate(config: TrainConfig, mode: str) -> None:
    """Reject settings that cannot work, naming the flag and the fix."""
    if mode not in MODES:
        raise ConfigError(f"SFT mode must be one of {MODES}; got {mode!r}")
    sft = config.sft
    checks = [
        (sft.learning_rate > 0, f"--sft.learning-rate must be > 0; got {sft.learning_rate}"),
        (sft.max_seq_length > 0, f"--sft.max-seq-length must be > 0; got {sft.max_seq_length}"),
        (sft.batch_size > 0, f"--sft.batch-size must be > 0; got {sft.batch_size}"),
        (sft.gradient_accumulation_steps > 0,
         f"--sft.gradient-accumulation-steps must be > 0; got {sft.gradient_accumulation_steps}"),
        (sft.num_epochs > 0 or sft.max_steps > 0,
         "set --sft.num-epochs > 0 or --sft.max-steps > 0"),
        (sft.pack_length >= 0, f"--sft.pack-length must be >= 0; got {sft.pack_length}"),
        (not sft.quant_bits or config.use_lora,
         (f"--sft.quant-bits {sft.quant_bits} (QLoRA) trains LoRA adapters on a frozen "
          "quantised base: add --use-lora true or drop --sft.quant-bits")),
        (sft.save_steps > 0, f"--sft.save-steps must be > 0; got {sft.save_steps}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def lora_config(config: TrainConfig):
    """The peft LoraConfig for the run (None for full fine-tuning)."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    from aimo3_recipe.models import LoraSettings

    s = LoraSettings(r=config.lora_rank, alpha=config.lora_alpha)
    return LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout,
                      target_modules=s.target_modules, task_type="CAUSAL_LM", **s.extra)


def sft_args(config: TrainConfig, checkpoints_dir: Path, device: str, dtype) -> Any:
    """TRL's SFTConfig from our `sft` section: what we expose maps one to one, the rest is
    TRL's."""
    import torch
    from trl import SFTConfig as TRLSFTConfig

    on_cuda = device.startswith("cuda")
    sft = config.sft
    checkpointing = on_cuda if sft.gradient_checkpointing is None else sft.gradient_checkpointing
    return TRLSFTConfig(
        output_dir=str(checkpoints_dir),
        learning_rate=sft.learning_rate,
        num_train_epochs=sft.num_epochs,
        max_steps=sft.max_steps,
        per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.gradient_accumulation_steps,
        warmup_steps=sft.warmup_ratio,  # a value below 1 is a fraction of the total steps
        logging_steps=sft.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=sft.save_steps,
        save_total_limit=sft.save_total_limit,
        seed=sft.seed,
        bf16=dtype == torch.bfloat16,  # autocast (also on CPU); weights per _load_model
        fp16=on_cuda and dtype == torch.float16,
        use_cpu=device == "cpu",
        activation_checkpointing=checkpointing,
        max_length=sft.max_seq_length,
        packing=False,  # we pack ourselves (packing.py): TRL's flat rows are slow with SDPA
        dataset_kwargs={"skip_prepare_dataset": True},  # examples arrive tokenized + masked
        report_to="none",  # our MetricsLogger writes metrics.jsonl / TensorBoard / W&B
        disable_tqdm=False,
        dataloader_num_workers=0,  # the collator counts tokens in this process
    )


def _load_model(base: str, config: TrainConfig, device: str, dtype):
    """Model on its training device; under FSDP / DeepSpeed the Trainer places and shards it."""
    from aimo3_recipe.models import load_model, rank_device

    sharding = _distributed_sharding()
    if sharding:
        from transformers import AutoModelForCausalLM

        from aimo3_recipe.models import resolve_model_path

        return AutoModelForCausalLM.from_pretrained(resolve_model_path(base), dtype=dtype)
    # 16-bit full fine-tuning trains in mixed precision: fp32 master weights, 16-bit autocast
    # (TrainingArguments bf16/fp16); in pure bf16 a 2e-5 update to a weight of 0.02 rounds away
    full = not config.use_lora and not config.sft.quant_bits
    load_dtype = _dtype_name(dtype)
    if _dtype_name(dtype) == "float16" or (full and _dtype_name(dtype) == "bfloat16"):
        load_dtype = "float32"
    return load_model(base, device=rank_device(device), dtype=load_dtype,
                      quant_bits=config.sft.quant_bits)


def _packing_layout(model, config: TrainConfig) -> str:
    from aimo3_recipe.training.packing import choose_layout, examples_stay_separate

    layout = choose_layout(model, config.sft.packing)
    if layout == "padded" or _distributed_sharding() == "deepspeed":
        return layout  # ZeRO-3 shards parameters at load: no probe; the rule above holds
    if not examples_stay_separate(model, layout):
        notice(f"packing disabled: this model's attention ({model.config._attn_implementation}) "
               "lets packed examples see each other; training on padded batches instead")
        return "padded"
    return layout


def pack_length(sft, lengths: Sequence[int]) -> int:
    """Row length for packing (`sft`: the SFTConfig section): --sft.pack-length, else the
    longest example; at most the max length.

    Rows as long as the longest example keep SDPA's dense block-diagonal attention about as
    cheap per token as a padded batch's, while removing the padding. A --sft.pack-length below
    the longest example truncates the longer ones."""
    wanted = sft.pack_length or max(lengths, default=sft.max_seq_length)
    return min(wanted, sft.max_seq_length)


def build_trainer(config: TrainConfig, args, model, tokenizer, dataset,
                  callbacks: Sequence[Any] = ()):
    """SFTTrainer over a tokenized dataset (`input_ids`, `labels`), packed when the model's
    attention keeps packed examples apart. Returns (trainer, collator, layout)."""
    from trl import SFTTrainer

    from aimo3_recipe.training.packing import SFTCollator, pack_dataset

    layout = _packing_layout(model, config)
    if layout != "padded":
        dataset = pack_dataset(dataset, pack_length(config.sft, [len(x) for x in dataset["input_ids"]]))
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, layout=layout)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                         processing_class=tokenizer, peft_config=lora_config(config),
                         callbacks=list(callbacks))
    return trainer, collator, layout


def run_sft(config: TrainConfig, mode: str, *, base_model: str | None = None,
            callbacks: Sequence[Any] = ()) -> Path:
    """Train one SFT stage; returns the final model folder (`<output_dir>/<stage>/model`).

    `callbacks` are extra transformers TrainerCallbacks (tests use one to stop mid-run).
    """
    from aimo3_recipe.models import load_tokenizer, select_device, select_dtype
    from aimo3_recipe.training.metrics_callback import MetricsCallback
    from aimo3_recipe.training.sft_data import (
        dataset_label,
        load_records,
        stage_dataset,
        tokenize_records,
    )
    from aimo3_recipe.utils.ml_log import MetricsLogger

    validate(config, mode)
    sft = config.sft
    base = base_model or config.base_model
    dirs = stage_dirs(config.output_dir, config.stage)
    device = select_device(config.device)
    dtype = select_dtype(config.dtype, device)
    dataset_name = stage_dataset(config, mode, base)
    resume_from = last_checkpoint(dirs["checkpoints"]) if config.resume else None
    resolved = sft_view(dataclasses.replace(config, base_model=str(base),
                                            sft=dataclasses.replace(sft, dataset=dataset_name)))

    # TrainingArguments before the model: DeepSpeed ZeRO-3 then loads it already sharded
    args = sft_args(config, dirs["checkpoints"], device, dtype)
    tokenizer = load_tokenizer(base)
    records = load_records(dataset_name, sft.max_samples, sft.seed)
    dataset, stats = tokenize_records(records, tokenizer, mode, sft.max_seq_length)
    notice(f"[{config.stage}] dataset {dataset_label(dataset_name)}: {stats.examples} examples, "
           f"{stats.tokens} tokens ({stats.records} records read)")
    model = _load_model(base, config, device, dtype)
    trainer, collator, layout = build_trainer(config, args, model, tokenizer, dataset, callbacks)

    logger = MetricsLogger(dirs["root"], config.report_to, resume=resume_from is not None,
                           config={"train": resolved, "data": stats, "packing_layout": layout})
    try:
        trainer.add_callback(MetricsCallback(logger, collator))
        if resume_from:
            notice(f"resuming {config.stage} from {resume_from}")
        trainer.train(resume_from_checkpoint=resume_from)
        return save_final(trainer, tokenizer, config.output_dir, config.stage, config.use_lora,
                          _dtype_name(dtype))
    finally:
        logger.close()
