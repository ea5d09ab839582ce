"""The README's first command: load the embedded default model and answer a maths question.

Runs offline on a CPU machine. `python -m aimo3_recipe.demo [--question "..."]`.
"""

from __future__ import annotations

import argparse
import sys
import time


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aimo3_recipe.demo")
    parser.add_argument("--model", default="default", help="model to load (default: embedded)")
    parser.add_argument("--question", default="What is 12 + 35? Put the final answer in \\boxed{}.")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args(argv)

    import torch

    from aimo3_recipe.models import load_model_and_tokenizer

    t0 = time.time()
    model, tokenizer = load_model_and_tokenizer(args.model, device="cpu")
    print(f"[demo] loaded {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"params) in {time.time() - t0:.1f}s")
    messages = [{"role": "user", "content": args.question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    t0 = time.time()
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=args.max_new_tokens, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"[demo] question: {args.question}")
    print(f"[demo] answer ({time.time() - t0:.1f}s): {text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
