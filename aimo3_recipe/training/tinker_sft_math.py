"""Stages 1-2 on Tinker: supervised fine-tuning (CoT or TIR) through `forward_backward` with
the service's cross-entropy loss.

    python aimo3_recipe/training/tinker_sft_math.py model_name=Qwen/Qwen3-8B stage=cot \\
        log_dir=./outputs/tinker-sft [dataset=...] [max_samples=...] [batch_size=32] \\
        [learning_rate=2e-5] [num_epochs=3] [verbose=True] [wandb_project=...]

The data path is the local SFT stages' (training/sft_data.py: records -> the stage's
solution -> `render_example` tokens and loss masks: the prompt and TIR tool output carry no
loss); each optimizer step takes `batch_size` examples in a seeded order (the same after a
resume) and weights every trained token by 1 / (trained tokens of the batch), so the
service's summed loss is the mean token NLL, which is what `train/loss` reports. Constant
learning rate (no warm-up or decay, unlike the local SFT). State and optimizer are saved every
`save_every` steps; rerunning with the same `log_dir` resumes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.training.tinker_config import TinkerTrainConfig


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

    if cfg.stage not in ("cot", "tir"):
        raise ConfigError(f"stage must be cot or tir for Tinker SFT; got {cfg.stage!r}")
    if cfg.batch_size < 1 or cfg.save_every < 1:
        raise ConfigError(f"batch_size and save_every must be >= 1; got {cfg.batch_size}, "
                          f"{cfg.save_every}")
    tokenizer = load_tokenizer(cfg.model_name)
    records = load_records(cfg.dataset or default_dataset(cfg.model_name, cfg.stage),
                           cfg.max_samples, cfg.seed)
    data, stats = tokenize_records(records, tokenizer, cfg.stage, cfg.max_seq_length)
    examples = list(zip(data["input_ids"], data["labels"]))
    total = math.ceil(cfg.num_epochs * math.ceil(len(examples) / cfg.batch_size))
    service, backend, start = open_backend(cfg, tokenizer, learning_rate=cfg.learning_rate,
                                           kind="sft")
    logger = make_logger(cfg, start > 0, {"num_examples": len(examples), "num_steps": total,
                                          "data": stats})
    run = Path(cfg.log_dir)
    try:
        for step in range(start, total):
            t0 = time.perf_counter()
            batch = batch_records(examples, step, cfg.batch_size, cfg.seed)
            metrics = sft_step(backend, batch, cfg.learning_rate)
            done = step + 1
            metrics["train/epoch"] = done * cfg.batch_size / len(examples)
            metrics["time/step"] = time.perf_counter() - t0
            logger.log(metrics, done)
            if cfg.verbose:
                print(f"[tinker sft] step {done}/{total} loss={metrics['train/loss']:.4f} "
                      f"tokens={metrics['train/num_tokens']:.0f} "
                      f"grad_norm={metrics['train/grad_norm']:.3g}", flush=True)
            if done % cfg.save_every == 0 or done == total:
                save_checkpoint(backend, run / "checkpoints", done)
    finally:
        logger.close()
    return export_weights(service, backend, cfg) or run if cfg.export else run


if __name__ == "__main__":
    from aimo3_recipe.training.tinker_session import run_cli

    run_cli(main, "sft")
