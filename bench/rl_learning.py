"""Does RL teach anything beyond the format? RL from one SFT model twice, with the
correctness reward and with a format-only reward, then both (and the starting model) on the
same held-out problems, greedy, with 95% Wilson intervals.

    python bench/rl_learning.py --model outputs/demo/tir/model          # after `make demo`
    python bench/rl_learning.py --model M --steps 12 --problems 100

RL can look useful when it only teaches the model to box its answer; the format-only run
(reward +0.1 for a closed box, nothing for correctness, groups kept when the format varies)
is the control: the correctness run must beat it, by more than the intervals, to count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from aimo3_recipe.rl.rewards import MathRewardFunction, RewardResult


class FormatOnlyReward(MathRewardFunction):
    """+format_reward for a closed box in the model's text, nothing for correctness. Its
    `correct` is 'boxed', so the loop keeps exactly the groups whose format varies."""

    def __call__(self, model_text, ground_truth, truncated=False, problem=None):
        real = super().__call__(model_text, ground_truth, truncated=truncated, problem=problem)
        return RewardResult(self.format_reward if real.boxed else 0.0, real.boxed, real.boxed,
                            real.extracted, real.grader_status, real.truncated)


def evaluate(model: str, problems, mode: str, max_new_tokens: int, use_vllm) -> dict:
    """Greedy held-out accuracy through the evaluation harness."""
    import tempfile

    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import build_engine, main

    bench = Path(tempfile.mkdtemp(prefix="rl-learning-")) / "heldout.jsonl"
    bench.write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n"
                             for p in problems))
    cfg = EvalConfig(model=model, benchmark=str(bench), strategy="greedy", mode=mode,
                     max_new_tokens=max_new_tokens, use_vllm=use_vllm,
                     output_dir=str(bench.parent / "eval"), progress=False)
    engine = build_engine(cfg, max_new_tokens)
    try:
        res = main(cfg, engine=engine)
    finally:  # one vLLM engine at a time: RL starts its own next
        if hasattr(engine, "close"):
            engine.close()
    g = res["metrics"]["greedy"]
    return {"accuracy": g["accuracy"], "ci": list(g["ci"]), "boxed": g.get("boxed_rate")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="the SFT model RL starts from")
    p.add_argument("--out", default="outputs/rl_learning")
    p.add_argument("--mode", default="tir")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--lr", type=float, default=2e-6)
    p.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step (memory)")
    p.add_argument("--problems", type=int, default=100, help="held-out problems")
    p.add_argument("--train-problems", type=int, default=400)
    p.add_argument("--use-vllm", default="auto")
    args = p.parse_args()
    os.environ.setdefault("AIMO3_PROGRESS", "0")

    from aimo3_recipe.data.heldout import held_out_problems
    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer

    train = generate_synthetic(args.train_problems, seed=11)
    held = held_out_problems(args.problems, seed=101)
    table = {"start": evaluate(args.model, held, args.mode, args.max_new_tokens, args.use_vllm)}
    for name, reward in (("correctness", MathRewardFunction()),
                         ("format_only", FormatOnlyReward())):
        out = Path(args.out) / name
        cfg = RLMathConfig(model_name_or_path=args.model, output_dir=str(out), mode=args.mode,
                           num_steps=args.steps, batch_size=args.batch_size,
                           group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                           learning_rate=args.lr, temperature=1.0, use_lora=False,
                           gradient_accumulation_steps=args.grad_accum,
                           eval_samples=0, save_steps=10_000, use_vllm=args.use_vllm)
        t0 = time.time()
        model = RLMathTrainer(cfg, reward).train(train)
        minutes = (time.time() - t0) / 60
        table[name] = {**evaluate(str(model), held, args.mode, args.max_new_tokens,
                                  args.use_vllm), "rl_minutes": minutes}
    print(f"held-out problems: {len(held)} (data/heldout.py), greedy, {args.mode} prompts")
    for name, row in table.items():
        extra = f", RL {row['rl_minutes']:.1f} min" if "rl_minutes" in row else ""
        print(f"  {name:12s} {100 * row['accuracy']:5.1f}% [{100 * row['ci'][0]:.1f}, "
              f"{100 * row['ci'][1]:.1f}]{extra}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "rl_learning.json").write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
