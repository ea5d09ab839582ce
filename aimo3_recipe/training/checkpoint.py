"""Where an SFT stage keeps its checkpoints and final models, and how it writes them.

    <output_dir>/<stage>/
        config.json, metrics.jsonl    the resolved TrainConfig and per-step metrics
        checkpoints/checkpoint-N/     trainer checkpoints (weights or adapter, optimizer,
                                      scheduler, RNG states, data position): resume from these
        adapter/                      LoRA runs: the adapter alone (+ tokenizer)
        model/                        the final model, LoRA merged into the base: a plain
                                      transformers folder that load_model and vLLM read

Resuming relies on transformers' Trainer, which restores the optimizer, scheduler, RNG states
and skips the batches already seen in the epoch, so a resumed run continues exactly as an
uninterrupted one would (`tests/test_sft_resume.py` checks the loss curves match).
"""

from __future__ import annotations

from pathlib import Path


def stage_dirs(output_dir: str | Path, stage: str) -> dict[str, Path]:
    """The paths of one stage's outputs (see the module docstring)."""
    root = Path(output_dir) / stage
    return {"root": root, "checkpoints": root / "checkpoints", "adapter": root / "adapter",
            "model": root / "model"}


def last_checkpoint(checkpoints_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` folder, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(checkpoints_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, dtype: str) -> Path:
    """Load base + adapter fresh on CPU, merge the LoRA weights, save a plain model folder.

    A fresh load (rather than merging the trained object) works the same after DDP, FSDP,
    DeepSpeed or QLoRA training: the base is read unquantised, so the merge is exact.
    """
    from aimo3_recipe.models import load_model, load_tokenizer

    peft_model = load_model(adapter_dir, device="cpu", dtype=dtype)
    merged = peft_model.merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    load_tokenizer(adapter_dir).save_pretrained(out)
    return out


def save_final(trainer, tokenizer, output_dir: str | Path, stage: str, use_lora: bool,
               dtype: str) -> Path:
    """Write the adapter (LoRA) and the merged / fully fine-tuned model; return the model folder.

    `trainer.save_model` gathers sharded weights (FSDP, ZeRO-3) before writing.
    """
    dirs = stage_dirs(output_dir, stage)
    if use_lora:
        trainer.save_model(str(dirs["adapter"]))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(dirs["adapter"])
            merge_adapter(dirs["adapter"], dirs["model"], dtype)
    else:
        trainer.save_model(str(dirs["model"]))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(dirs["model"])
    trainer.accelerator.wait_for_everyone()
    return dirs["model"]
