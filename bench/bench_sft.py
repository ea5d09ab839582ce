"""Bench: SFT training throughput, our SFT (packed, examples kept apart) vs TRL's SFTTrainer
without packing, on the same examples of realistic, varied lengths.

    python bench/bench_sft.py [--model default] [--examples 32] [--max-length 1024]

Both variants train the same model (LoRA rank 64, the recipe default) for one epoch on the
same tokenized examples with the same batch size and TrainingArguments; each runs in its own
subprocess so peak memory is its own. Throughput counts real tokens (not padding): the sum of
the example lengths divided by the wall time of `trainer.train()`.

Lengths are drawn log-normal (median ~350 tokens, long tail up to --max-length), the shape of
NuminaMath-style solutions; tokens are random ids with the first quarter of each example
masked as its prompt. Throughput does not depend on what the tokens say.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_examples(vocab_size: int, n: int, max_length: int, seed: int = 0) -> list[dict]:
    """`n` examples with log-normal lengths in [48, max_length], prompt quarter masked."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(torch.randn(n, generator=g) * 0.6 + 5.86).round().clamp(48, max_length)
    examples = []
    for length in lengths.int().tolist():
        ids = torch.randint(10, vocab_size, (length,), generator=g).tolist()
        prompt = length // 4
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples


def padded_fraction(lengths: list[int], batch_size: int, orders: int = 200) -> float:
    """Real / computed tokens of right-padded batches, averaged over random data orders: the
    most packing can gain on this data is 1 / this (less the extra attention of packed rows)."""
    import random

    real = computed = 0
    for seed in range(orders):
        order = lengths[:]
        random.Random(seed).shuffle(order)
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            real, computed = real + sum(batch), computed + max(batch) * len(batch)
    return real / computed


def run_variant(variant: str, opts: argparse.Namespace) -> dict:
    """Train one epoch in this process; return throughput and peak memory."""
    import torch
    from datasets import Dataset

    from aimo3_recipe.models import load_tokenizer, select_device, select_dtype
    from aimo3_recipe.training.config import TrainConfig
    from aimo3_recipe.training.sft import _load_model, build_trainer, lora_config, sft_args

    if opts.threads:
        torch.set_num_threads(opts.threads)
    config = TrainConfig(base_model=opts.model, batch_size=opts.batch_size,
                         gradient_accumulation_steps=1, num_epochs=1, learning_rate=1e-4,
                         max_seq_length=opts.max_length, logging_steps=1000, save_steps=10**6,
                         packing=variant == "ours", use_lora=not opts.full)
    device = select_device(config.device)
    dtype = select_dtype(config.dtype, device)
    tokenizer = load_tokenizer(opts.model)
    model = _load_model(opts.model, config, device, dtype)
    examples = make_examples(model.get_input_embeddings().weight.shape[0], opts.examples,
                             opts.max_length, opts.seed)
    dataset = Dataset.from_list(examples)
    with tempfile.TemporaryDirectory() as tmp:
        args = sft_args(config, Path(tmp), device, dtype)
        args.disable_tqdm = True
        if variant == "ours":
            trainer, _, layout = build_trainer(config, args, model, tokenizer, dataset)
        else:  # TRL as a user would call it: its own collator and dataset preparation
            from trl import SFTTrainer

            args.dataset_kwargs = None
            trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                                 processing_class=tokenizer, peft_config=lora_config(config))
            layout = "trl-padded"
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    real_tokens = sum(len(e["input_ids"]) for e in examples)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "layout": layout, "device": device, "seconds": seconds,
            "real_tokens": real_tokens, "tokens_per_s": real_tokens / seconds,
            "steps": trainer.state.global_step, "peak_mem_mb": peak_mb,
            "threads": torch.get_num_threads(),
            "padded_fraction": padded_fraction([len(e["input_ids"]) for e in examples],
                                               opts.batch_size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model to train (default: embedded)")
    parser.add_argument("--examples", type=int, default=24, help="training examples")
    parser.add_argument("--max-length", type=int, default=768, help="longest example")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per micro-batch")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids OpenMP spinning on shared cores; 0: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=["ours", "trl"], help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.variant:  # child process: one measurement, JSON on the last stdout line
        print(json.dumps(run_variant(opts.variant, opts)))
        return 0

    results = {}
    for variant in ("trl", "ours"):
        cmd = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{variant}: {results[variant]}", flush=True)
    trl, ours = results["trl"], results["ours"]
    print(f"model={opts.model} examples={opts.examples} real_tokens={ours['real_tokens']} "
          f"batch={opts.batch_size} max_length={opts.max_length} device={ours['device']} "
          f"threads={ours['threads']} {'full FT' if opts.full else 'LoRA r64'}")
    print(f"{'variant':<28}{'layout':<12}{'steps':>6}{'seconds':>9}{'real tok/s':>12}{'peak MB':>10}")
    for name, r in (("TRL SFTTrainer, no packing", trl), ("ours, packed", ours)):
        print(f"{name:<28}{r['layout']:<12}{r['steps']:>6}{r['seconds']:>9.1f}"
              f"{r['tokens_per_s']:>12.1f}{r['peak_mem_mb']:>10.0f}")
    print(f"real tokens in TRL's padded batches: {trl['padded_fraction']:.0%} "
          f"(packing's ceiling: {1 / trl['padded_fraction']:.2f}x)")
    print(f"speedup (real tokens/s, ours / TRL no packing): "
          f"{ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x  (goal >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
