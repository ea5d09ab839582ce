"""Bench: SFT training throughput, our SFT (packed, examples kept apart) vs TRL's SFTTrainer
without packing, on the same real maths solutions of varied lengths.

    python bench/bench_sft.py [--model default] [--examples 24] [--max-length 768] [--batch-size 4]

Data: `--examples` worked solutions drawn with a fixed seed from Hendrycks MATH test
(`$AIMO3_DATA_DIR/math_test5000.jsonl`, or `--data FILE`), rendered by our chat renderer
exactly as `train --stage cot` does (loss on the assistant's tokens only). Their lengths run
from under 100 to over 1,000 tokens (median ~275), the shape of real SFT data.

Both variants train the same model (LoRA rank 64, the recipe default) for one epoch on the
same tokenized examples with the same micro-batch size (rows), optimizer, learning rate and
gradient checkpointing (on for both, so both fit in a few GB); TRL gets the examples in its own
tokenized format (`input_ids` + `completion_mask`) with its own collator, as a user would pass
them. Each variant runs in its own subprocess so its peak memory (RSS, or CUDA allocated) is its
own. Throughput counts real tokens (not padding) of the batches after the first `--warmup`
optimizer steps, divided by the wall time of those steps.
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

DEFAULT_DATA = "math_test5000.jsonl"


def data_path(opts: argparse.Namespace) -> Path:
    """--data, else math_test5000.jsonl in $AIMO3_DATA_DIR or /work/shared/data."""
    if opts.data:
        return Path(opts.data)
    folder = os.environ.get("AIMO3_DATA_DIR", "/work/shared/data")
    return Path(folder) / DEFAULT_DATA


def load_examples(path: Path, tokenizer, n: int, max_length: int, seed: int):
    """`n` records drawn with `seed`, rendered and tokenized like the CoT stage."""
    import random

    from aimo3_recipe.data.datasets import load_math_dataset
    from aimo3_recipe.training.sft_data import tokenize_records

    if not path.is_file():
        raise SystemExit(f"bench data {path} not found: pass --data FILE (a .jsonl with "
                         "problem/solution fields, e.g. Hendrycks MATH) or set AIMO3_DATA_DIR")
    records = load_math_dataset(str(path))
    random.Random(seed).shuffle(records)
    dataset, _ = tokenize_records(records[:n], tokenizer, "cot", max_length)
    return dataset


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


class CountingCollator:
    """Wraps a collator; records each batch's real tokens and computed (padded) positions."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.real: list[int] = []  # real tokens per micro-batch, in the order trained
        self.computed: list[int] = []  # positions the model computes per micro-batch

    def __call__(self, examples):
        batch = self.inner(examples)
        self.real.append(sum(len(e["input_ids"]) for e in examples))
        self.computed.append(int(batch["input_ids"].numel()))
        return batch


def run_variant(variant: str, opts: argparse.Namespace) -> dict:
    """Train one epoch in this process; return throughput and peak memory."""
    import torch
    from transformers import TrainerCallback

    from aimo3_recipe.data.renderers import IGNORE_INDEX
    from aimo3_recipe.models import load_tokenizer, select_device, select_dtype
    from aimo3_recipe.training.config import SFTConfig, TrainConfig
    from aimo3_recipe.training.sft import _load_model, build_trainer, lora_config, sft_args

    if opts.threads:
        torch.set_num_threads(opts.threads)
    sft = SFTConfig(batch_size=opts.batch_size, gradient_accumulation_steps=1, num_epochs=1,
                    learning_rate=1e-4, max_seq_length=opts.max_length, logging_steps=1000,
                    save_steps=10**6, packing=variant == "ours", seed=opts.seed,
                    gradient_checkpointing=not opts.no_checkpointing)
    config = TrainConfig(base_model=opts.model, use_lora=not opts.full, sft=sft)
    device = select_device(config.device)
    dtype = select_dtype(config.dtype, device)
    tokenizer = load_tokenizer(opts.model)
    dataset = load_examples(data_path(opts), tokenizer, opts.examples, opts.max_length, opts.seed)
    model = _load_model(opts.model, config, device, dtype)
    step_ends: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = sft_args(config, Path(tmp), device, dtype)
        args.disable_tqdm = True
        if variant == "ours":
            trainer, _, layout = build_trainer(config, args, model, tokenizer, dataset)
        else:  # TRL as a user would call it: its tokenized format, its collator, its prep
            from trl import SFTTrainer

            args.dataset_kwargs = None
            trl_data = dataset.map(lambda e: {"completion_mask": [
                int(label != IGNORE_INDEX) for label in e["labels"]]}, remove_columns=["labels"])
            trainer = SFTTrainer(model=model, args=args, train_dataset=trl_data,
                                 processing_class=tokenizer, peft_config=lora_config(config))
            layout = "padded"
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        trainer.add_callback(StepTimes())
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train()
        total_seconds = time.perf_counter() - start
        checkpointing = bool(trainer.args.activation_checkpointing)
    warm = opts.warmup * config.sft.gradient_accumulation_steps  # micro-batches left out
    if len(step_ends) <= opts.warmup:
        raise SystemExit(f"only {len(step_ends)} optimizer steps, none left after --warmup "
                         f"{opts.warmup}: raise --examples or lower --warmup")
    seconds = step_ends[-1] - step_ends[opts.warmup - 1] if opts.warmup else total_seconds
    real = sum(counter.real[warm:])
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    lengths = [len(x) for x in dataset["input_ids"]]
    return {"variant": variant, "layout": layout, "device": device, "seconds": seconds,
            "total_seconds": total_seconds, "timed_tokens": real, "tokens_per_s": real / seconds,
            "all_tokens": sum(lengths), "steps": len(step_ends), "peak_mem_mb": peak_mb,
            "real_fraction": real / sum(counter.computed[warm:]),
            "tokens_per_step": sum(counter.real) / len(step_ends),
            "checkpointing": checkpointing, "threads": torch.get_num_threads(),
            "expected_padded_fraction": padded_fraction(lengths, opts.batch_size),
            "median_length": sorted(lengths)[len(lengths) // 2], "max_length": max(lengths)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model to train (default: embedded)")
    parser.add_argument("--data", default=None,
                        help=f"problem/solution .jsonl (default: {DEFAULT_DATA} in $AIMO3_DATA_DIR)")
    parser.add_argument("--examples", type=int, default=24, help="training examples")
    parser.add_argument("--max-length", type=int, default=768, help="longer examples are cut")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per micro-batch")
    parser.add_argument("--warmup", type=int, default=1, help="optimizer steps left out of timing")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="keep all activations (faster, several times the memory)")
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
    print(f"model={opts.model} data={data_path(opts).name} examples={opts.examples} "
          f"real_tokens={ours['all_tokens']} (median {ours['median_length']}, longest "
          f"{ours['max_length']}) batch={opts.batch_size} max_length={opts.max_length} "
          f"device={ours['device']} threads={ours['threads']} "
          f"checkpointing={ours['checkpointing']} {'full FT' if opts.full else 'LoRA r64'} "
          f"warm-up steps left out={opts.warmup}")
    print(f"{'variant':<28}{'layout':<8}{'steps':>6}{'tok/step':>9}{'timed s':>9}{'real %':>8}"
          f"{'real tok/s':>12}{'peak MB':>10}")
    for name, r in (("TRL SFTTrainer, no packing", trl), ("ours, packed", ours)):
        print(f"{name:<28}{r['layout']:<8}{r['steps']:>6}{r['tokens_per_step']:>9.0f}"
              f"{r['seconds']:>9.1f}{r['real_fraction']:>8.0%}{r['tokens_per_s']:>12.1f}"
              f"{r['peak_mem_mb']:>10.0f}")
    print(f"real tokens in padded batches of {opts.batch_size} (mean over data orders): "
          f"{trl['expected_padded_fraction']:.0%} (packing's ceiling: "
          f"{1 / trl['expected_padded_fraction']:.2f}x)")
    print(f"speedup (real tokens/s, ours / TRL no packing): "
          f"{ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x  (goal >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
