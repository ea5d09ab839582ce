"""Stages 1-2 on Tinker: supervised fine-tuning (CoT or TIR) through `forward_backward` with
the service's cross-entropy loss.

    python aimo3_recipe/training/tinker_sft_math.py model_name=Qwen/Qwen3-8B stage=cot \\
        log_dir=./outputs/tinker-sft [sft.dataset=...] [max_samples=...] [batch_size=32] \\
        [sft.learning_rate=2e-5] [sft.num_epochs=3] [verbose=True] [wandb_project=...]

The data path is the local SFT stages' (training/sft_data.py: records -> the stage's
solution -> `render_example` tokens and loss masks: the prompt and TIR tool output carry no
loss); each optimizer step takes sft.batch_size x sft.gradient_accumulation_steps examples
(32 x 1 by default) in a seeded order (the same after a resume) and weights every trained
token by 1 / (trained tokens of the batch), so the service's summed loss is the mean token
NLL, which is what `train/loss` reports. It reads the `sft` section local SFT reads; what
the service cannot do (`UNSUPPORTED`: a warm-up schedule, packing, QLoRA...) is refused when
set. State and optimizer are saved every `sft.save_steps` steps; rerunning with the same
`log_dir` resumes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.training.tinker_config import TinkerTrainConfig

# sft.* settings of local SFT that Tinker SFT cannot honour, and why
UNSUPPORTED = {
    "warmup_ratio": "the service trains at a constant learning rate (no schedule)",
    "packing": "the service batches examples itself",
    "pack_length": "the service batches examples itself",
    "gradient_checkpointing": "the service manages its own memory",
    "quant_bits": "the service serves its own weights (no QLoRA)",
    "save_total_limit": "service states are kept by the service",
}


def check_sft(cfg: TinkerTrainConfig) -> None:
    """Refuse an `sft.*` setting Tinker SFT would ignore (set away from its default)."""
    default = TinkerTrainConfig().sft
    for name, why in UNSUPPORTED.items():
        if getattr(cfg.sft, name) != getattr(default, name):
            raise ConfigError(f"sft.{name}={getattr(cfg.sft, name)!r}: Tinker SFT cannot honour "
                              f"it ({why}); drop it, or train locally (train.py --stage cot)")


def sft_step(backend, examples: list[tuple[list[int], list[int]]], learning_rate: float
             ) -> dict[str, float]:
    """One optimizer step of cross-entropy on `examples` ((input_ids, labels) pairs)."""
    from aimo3_recipe.rl.tinker_backend import output_logprobs, sft_rows, to_tinker

    trained = sum(sum(t != -100 for t in lab[1:]) for _, lab in examples)
    rows = sft_rows([e[0] for e in examples], [e[1] for e in examples], scale=1.0 / trained)
    out = backend.mutate("forward_backward",
                         ([to_tinker(r, "cross_entropy") for r in rows], "cross_entropy", None))
    lps = output_logprobs(out)
    loss = -sum(w * lp for r, row_lp in zip(rows, lps) for w, lp in zip(r.weights, row_lp))
    step = backend.optim_step()
    return {"train/loss": loss, "train/num_tokens": float(trained),
            "train/learning_rate": learning_rate, **step}


def main(cfg: TinkerTrainConfig) -> Path:
    """Run SFT on Tinker; returns the exported model (or adapter) folder, or log_dir."""
    from aimo3_recipe.models import load_tokenizer
    from aimo3_recipe.rl.checkpoints import save_checkpoint
    from aimo3_recipe.rl.loop import batch_records
    from aimo3_recipe.training.sft_data import default_dataset, load_records, tokenize_records
    from aimo3_recipe.training.tinker_session import export_weights, make_logger, open_backend

    sft = cfg.sft
    if cfg.stage not in ("cot", "tir"):
        raise ConfigError(f"stage must be cot or tir for Tinker SFT; got {cfg.stage!r}")
    check_sft(cfg)
    per_step = sft.batch_size * sft.gradient_accumulation_steps
    if per_step < 1 or sft.save_steps < 1 or sft.logging_steps < 1:
        raise ConfigError(f"sft.batch_size, gradient_accumulation_steps, save_steps and "
                          f"logging_steps must be >= 1; got {sft.batch_size}, "
                          f"{sft.gradient_accumulation_steps}, {sft.save_steps}, "
                          f"{sft.logging_steps}")
    tokenizer = load_tokenizer(cfg.model_name)
    stage_named = sft.cot_dataset if cfg.stage == "cot" else sft.tir_dataset
    records = load_records(sft.dataset or stage_named or default_dataset(cfg.model_name, cfg.stage),
                           sft.max_samples, sft.seed)
    data, stats = tokenize_records(records, tokenizer, cfg.stage, sft.max_seq_length)
    examples = list(zip(data["input_ids"], data["labels"]))
    total = math.ceil(sft.num_epochs * math.ceil(len(examples) / per_step))
    if sft.max_steps > 0:  # as locally (transformers): max_steps overrides the epochs
        total = sft.max_steps
    # gradient clipping at 1.0, as local SFT (transformers' default)
    service, backend, start = open_backend(cfg, tokenizer, learning_rate=sft.learning_rate,
                                           max_grad_norm=1.0, kind="sft", seed=sft.seed)
    logger = make_logger(cfg, start > 0, {"num_examples": len(examples), "num_steps": total,
                                          "data": stats})
    run = Path(cfg.log_dir)
    try:
        for step in range(start, total):
            t0 = time.perf_counter()
            batch = batch_records(examples, step, per_step, sft.seed)
            metrics = sft_step(backend, batch, sft.learning_rate)
            done = step + 1
            metrics["train/epoch"] = done * per_step / len(examples)
            metrics["time/step"] = time.perf_counter() - t0
            logger.log(metrics, done)
            if cfg.verbose and (done % sft.logging_steps == 0 or done == total):
                print(f"[tinker sft] step {done}/{total} loss={metrics['train/loss']:.4f} "
                      f"tokens={metrics['train/num_tokens']:.0f} "
                      f"grad_norm={metrics['train/grad_norm']:.3g}", flush=True)
            if done % sft.save_steps == 0 or done == total:
                save_checkpoint(backend, run / "checkpoints", done)
    finally:
        logger.close()
    return export_weights(service, backend, cfg) or run if cfg.export else run


if __name__ == "__main__":
    from aimo3_recipe.training.tinker_session import run_cli

    run_cli(main, "sft")
