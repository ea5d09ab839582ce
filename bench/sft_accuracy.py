"""Does the CoT stage teach the embedded default something? Held-out accuracy before/after.

    python bench/sft_accuracy.py [--train 300] [--eval 120] [--epochs 1] [--lora]

Trains `--stage cot` through the real CLI on generated problems (full fine-tune, lr 1e-4,
8 packed rows per step, about the SPEC's 16 unpacked examples), then scores the base and the trained model on
held-out generated problems (distinct statements, another seed) with greedy decoding and
`evaluation.answer_extraction.grade`. Prints both accuracies; on 2 CPU cores it takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def greedy_accuracy(model_path: str, records, batch_size: int, max_new_tokens: int) -> dict:
    """Greedy completions of the CoT prompt for every record, graded against its answer."""
    import torch

    from aimo3_recipe.data.renderers import encode_prompt, render_prompt
    from aimo3_recipe.grader import grade
    from aimo3_recipe.models import load_model, load_tokenizer

    model = load_model(model_path, device="cpu").eval()
    tok = load_tokenizer(model_path)
    tok.padding_side = "left"
    completions: list[str] = []
    start = time.perf_counter()
    for i in range(0, len(records), batch_size):
        chunk = records[i:i + batch_size]
        prompts = [encode_prompt(tok, render_prompt(tok, r.problem, "cot")) for r in chunk]
        batch = tok.pad({"input_ids": prompts}, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        completions += tok.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                        skip_special_tokens=True)
    grades = [grade(c, r.answer) for c, r in zip(completions, records)]
    return {"accuracy": sum(g.correct for g in grades) / len(grades),
            "boxed_rate": sum(g.boxed for g in grades) / len(grades),
            "seconds": time.perf_counter() - start, "example": completions[0][:300]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=300, help="generated training problems")
    parser.add_argument("--eval", type=int, default=120, help="held-out problems")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8, help="packed rows per step")
    parser.add_argument("--lora", action="store_true", help="LoRA instead of full fine-tuning")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", default=None)
    opts = parser.parse_args()

    import torch

    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.models import resolve_model_path
    from aimo3_recipe.training import train
    from aimo3_recipe.training.sft_data import load_records

    torch.set_num_threads(opts.threads)
    seed = 42
    seen = {r.problem for r in load_records("synthetic", opts.train, seed)}
    heldout = [r for r in generate_synthetic(opts.eval * 2, seed=20261129)
               if r.problem not in seen][:opts.eval]
    out = Path(opts.output_dir or tempfile.mkdtemp(prefix="sft-accuracy-"))

    before = greedy_accuracy(resolve_model_path("default"), heldout, 20, opts.max_new_tokens)
    print(f"before: accuracy {before['accuracy']:.1%} boxed {before['boxed_rate']:.1%} "
          f"({before['seconds']:.0f}s)", flush=True)
    start = time.perf_counter()
    rc = train.cli(["--stage", "cot", "--base-model", "default", "--output-dir", str(out),
                    "--max-samples", str(opts.train), "--sft.num-epochs", str(opts.epochs),
                    "--sft.learning-rate", str(opts.lr), "--sft.batch-size", str(opts.batch_size),
                    "--sft.gradient-accumulation-steps", "1", "--use-lora",
                    str(opts.lora).lower(), "--sft.max-seq-length", "512",
                    "--sft.logging-steps", "5", "--sft.save-steps", "10000",
                    "--sft.warmup-ratio", "0.05", "--seed", str(seed)])
    if rc != 0:
        return rc
    train_s = time.perf_counter() - start
    after = greedy_accuracy(str(out / "cot" / "model"), heldout, 20, opts.max_new_tokens)
    print(f"after:  accuracy {after['accuracy']:.1%} boxed {after['boxed_rate']:.1%} "
          f"({after['seconds']:.0f}s); training {train_s:.0f}s on {opts.train} problems, "
          f"{'LoRA' if opts.lora else 'full FT'}, lr {opts.lr}, {opts.epochs} epoch(s)")
    print(f"held-out problems: {len(heldout)}; sample after training:\n{after['example']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
