"""GRPO step time: our loop (vLLM rollouts, and transformers rollouts) against TRL's
`GRPOTrainer` with its default transformers generation, same model, batch, group size and
lengths, in one run.

    python bench/bench_rl.py                      # embedded default, 4 problems x 8, 128 tokens
    python bench/bench_rl.py --steps 4 --group-size 16 --skip-vllm

Both sides: the same problems (generated), CoT prompts rendered by our renderer, the same
reward (`--reward parity`, the default: even-length text is right, so every group varies and
both sides train every step; `--reward grader`: our grader), LoRA rank 16, lr 1e-5, one
optimizer step per GRPO step, DAPO loss, no KL. The first step of each side is a warm-up and
is not counted; the figure is the median of the rest. Prints our seconds per phase too
(generation, grading, forward/backward, weight sync) and the CPU line (bf16 matters for vLLM).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


class ParityReward:
    """--reward parity: even-length completions are 'right'. Every group then has variance,
    so both sides train at every step (with the real grader an untrained model is all wrong,
    our loop skips those updates and TRL does not: the step times would not compare)."""

    def __call__(self, text, ground_truth, truncated=False, problem=None):
        from aimo3_recipe.rl.rewards import RewardResult

        ok = len(text) % 2 == 0
        return RewardResult(1.0 if ok else -0.5, ok, False, None, "ok", truncated)


def make_reward(kind: str):
    from aimo3_recipe.rl.rewards import MathRewardFunction

    return ParityReward() if kind == "parity" else MathRewardFunction()


def trl_step_times(model_path: str, problems, args) -> list[float]:
    """Seconds per optimizer step of TRL's GRPOTrainer (transformers generation)."""
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    from aimo3_recipe.data.renderers import render_prompt
    from aimo3_recipe.models import LoraSettings, load_model, load_tokenizer
    tok = load_tokenizer(model_path)
    reward = make_reward(args.reward)

    def reward_fn(completions, answer, **_):
        return [reward(c, a).reward for c, a in zip(completions, answer)]

    model = load_model(model_path, device="cpu", dtype="float32",
                       lora=LoraSettings(r=16, alpha=32, dropout=0.0))
    data = Dataset.from_dict({"prompt": [render_prompt(tok, p.problem, "cot") for p in problems],
                              "answer": [p.answer for p in problems]})
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    cfg = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), loss_type="dapo", beta=0.0,
        epsilon=0.2, epsilon_high=0.28, scale_rewards="none", temperature=args.temperature,
        learning_rate=1e-5, per_device_train_batch_size=args.batch_size * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens,
        gradient_accumulation_steps=1, max_steps=args.steps, report_to="none", use_cpu=True,
        bf16=False, logging_steps=1, save_strategy="no", gradient_checkpointing=False)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward_fn, args=cfg, train_dataset=data,
                              processing_class=tok, callbacks=[Timer()])
    trainer.train()
    return times


def our_step_metrics(model_path: str, problems, args, use_vllm: bool) -> list[dict]:
    from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
    from aimo3_recipe.utils.ml_log import read_metrics

    out = tempfile.mkdtemp(prefix="bench-ours-")
    cfg = RLMathConfig(model_name_or_path=model_path, output_dir=out, mode="cot",
                       group_size=args.group_size, batch_size=args.batch_size,
                       num_steps=args.steps, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, learning_rate=1e-5, lora_rank=16,
                       lora_alpha=32, eval_samples=0, save_steps=10_000, device_map="cpu",
                       torch_dtype="float32", use_vllm=use_vllm)
    RLMathTrainer(cfg, make_reward(args.reward)).train(problems)
    return [r for r in read_metrics(out) if "time/step" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch-size", type=int, default=4, help="problems per step")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3, help="steps per side (first = warm-up)")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-hf", action="store_true", help="skip our transformers-rollout run")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--reward", choices=("parity", "grader"), default="parity",
                        help="parity: every group varies, so every step trains (default)")
    args = parser.parse_args()
    os.environ.setdefault("AIMO3_PROGRESS", "0")

    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.models import resolve_model_path
    from aimo3_recipe.utils.hardware import cpu_capability, vllm_cpu_dtype

    model_path = resolve_model_path(args.model)
    problems = generate_synthetic(args.batch_size * args.steps, seed=7)
    cap = cpu_capability()
    print(f"{cap.describe()}; {os.cpu_count()} cores; vLLM on CPU {vllm_cpu_dtype('auto', cap)[0]}")
    print(f"model {args.model}; {args.batch_size} problems x {args.group_size} rollouts, "
          f"{args.max_new_tokens} new tokens, {args.steps} steps per side (first one warm-up)")

    def med(xs):
        return statistics.median(xs[1:] if len(xs) > 1 else xs)

    figures: dict[str, float] = {}
    t0 = time.perf_counter()
    trl_times = trl_step_times(model_path, problems, args)
    figures["trl_s_per_step"] = med(trl_times)
    print(f"TRL GRPOTrainer (transformers generation): {figures['trl_s_per_step']:.1f} s/step "
          f"(steps: {', '.join(f'{t:.1f}' for t in trl_times)}; {time.perf_counter() - t0:.0f} s)")
    runs = [("ours, vLLM rollouts", True)] if not args.skip_vllm else []
    runs += [("ours, transformers rollouts", False)] if not args.skip_hf else []
    for label, use_vllm in runs:
        rows = our_step_metrics(model_path, problems, args, use_vllm)
        key = "vllm" if use_vllm else "hf"
        trained = [r for r in rows if "train/optimizer_steps" in r]
        if len(trained) < len(rows):
            print(f"  ({len(rows) - len(trained)} of {len(rows)} steps had no informative "
                  "group and skipped the update)")
        step = med([r["time/step"] for r in rows])
        figures[f"ours_{key}_s_per_step"] = step
        phases = {k.split("/", 1)[1]: med([r.get(k, 0.0) for r in rows])
                  for k in ("time/generation", "time/grading", "time/train", "time/weight_sync")}
        figures.update({f"ours_{key}_{k}_s": v for k, v in phases.items()})
        print(f"{label}: {step:.1f} s/step ({', '.join(f'{k} {v:.1f}' for k, v in phases.items())})"
              f"  -> {figures['trl_s_per_step'] / step:.2f}x TRL's speed (goal with vLLM: >= 2x)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
