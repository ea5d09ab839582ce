"""Does RL teach anything beyond the format? RL from one SFT model twice, with the
correctness reward and with a format-only reward, then both (and the starting model) on the
same held-out problems, greedy, with 95% Wilson intervals.

    python bench/rl_learning.py --model outputs/demo/tir/model          # after `make demo`
    python bench/rl_learning.py --model M --steps 12 --problems 100
    python bench/rl_learning.py --model M --lora-rank 32 --lr 2e-5 --edge-filter-samples 4

The held-out set is data/heldout.py's skills plus `--stories` story problems from the TUNING
part of data/heldout_stories.py (never the locked part: this bench is for tuning). Each RL
run's gain over the start model is paired on the same problems (evaluation/paired.py), and
the correctness run is compared with the format-only run the same way.

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
    """Greedy held-out accuracy through the evaluation harness, and each problem's verdict."""
    import tempfile

    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import build_engine, main
    from aimo3_recipe.training.stage_gains import problem_scores

    bench = Path(tempfile.mkdtemp(prefix="rl-learning-")) / "heldout.jsonl"
    bench.write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer,
                                         "id": p.metadata["id"]}) + "\n" for p in problems))
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
    lines = (bench.parent / "eval" / "samples.jsonl").read_text().splitlines()
    scores = problem_scores(json.loads(line) for line in lines if line.strip())["greedy"]
    return {"accuracy": g["accuracy"], "ci": list(g["ci"]), "boxed": g.get("boxed_rate"),
            "scores": scores}


def paired(before: dict, after: dict) -> dict:
    """after - before, paired on the problems both answered (evaluation/paired.py)."""
    from aimo3_recipe.evaluation.paired import format_gain, paired_gain

    ids = sorted(set(before["scores"]) & set(after["scores"]))
    g = paired_gain([before["scores"][i] for i in ids], [after["scores"][i] for i in ids])
    return {"gain": g.gain, "ci": list(g.ci), "p_value": g.p_value, "verdict": g.verdict,
            "text": format_gain(g)}


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
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    p.add_argument("--edge-filter-samples", type=int, default=0,
                   help="rollouts per candidate before RL; keep 0 < pass rate < 1 (0: off)")
    p.add_argument("--edge-filter-problems", type=int, default=0, help="candidates (0: all)")
    p.add_argument("--stories", type=int, default=100,
                   help="story problems from the tuning part of data/heldout_stories.py")
    p.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step (memory)")
    p.add_argument("--problems", type=int, default=100, help="held-out problems")
    p.add_argument("--train-problems", type=int, default=400)
    p.add_argument("--use-vllm", default="auto")
    args = p.parse_args()
    os.environ.setdefault("AIMO3_PROGRESS", "0")

    from aimo3_recipe.data.heldout import held_out_problems
    from aimo3_recipe.data.heldout_stories import held_out_stories
    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer

    train = generate_synthetic(args.train_problems, seed=11)
    held = held_out_problems(args.problems, seed=101) + held_out_stories(args.stories, seed=101)
    table = {"start": evaluate(args.model, held, args.mode, args.max_new_tokens, args.use_vllm)}
    for name, reward in (("correctness", MathRewardFunction()),
                         ("format_only", FormatOnlyReward())):
        out = Path(args.out) / name
        cfg = RLMathConfig(model_name_or_path=args.model, output_dir=str(out), mode=args.mode,
                           num_steps=args.steps, batch_size=args.batch_size,
                           group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                           learning_rate=args.lr, temperature=1.0,
                           use_lora=args.lora_rank > 0, lora_rank=args.lora_rank or 64,
                           lora_alpha=2 * (args.lora_rank or 64),
                           edge_filter_samples=args.edge_filter_samples,
                           edge_filter_problems=args.edge_filter_problems,
                           gradient_accumulation_steps=args.grad_accum,
                           eval_samples=0, save_steps=10_000, use_vllm=args.use_vllm)
        t0 = time.time()
        model = RLMathTrainer(cfg, reward).train(train)
        minutes = (time.time() - t0) / 60
        table[name] = {**evaluate(str(model), held, args.mode, args.max_new_tokens,
                                  args.use_vllm), "rl_minutes": minutes}
    print(f"held-out problems: {len(held)} (data/heldout.py + tuning stories), greedy, "
          f"{args.mode} prompts")
    for name, row in table.items():
        extra = f", RL {row['rl_minutes']:.1f} min" if "rl_minutes" in row else ""
        print(f"  {name:12s} {100 * row['accuracy']:5.1f}% [{100 * row['ci'][0]:.1f}, "
              f"{100 * row['ci'][1]:.1f}]{extra}")
    gains = {f"{n} vs start": paired(table["start"], table[n])
             for n in ("correctness", "format_only")}
    gains["correctness vs format_only"] = paired(table["format_only"], table["correctness"])
    for name, g in gains.items():
        print(f"  {name:27s} {g['text']}")
    table["paired"] = gains
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "rl_learning.json").write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
