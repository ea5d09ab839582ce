"""GRPO step time in one run: TRL 1.16's `GRPOTrainer` (vLLM colocate, its fastest mode, and
transformers generation) against our loop (vLLM rollouts on-policy, and one step off-policy),
on the same model, batch, group size and lengths.

    python bench/bench_rl.py                          # embedded default, 4 problems x 8, 128 tokens
    python bench/bench_rl.py --batch-size 2 --group-size 4 --max-new-tokens 32 --steps 3  # small
    python bench/bench_rl.py --sides trl-vllm,ours-k0,ours-k1 --json figures.json

Sides (`--sides`, comma list, run in this order, each in its own process so that one's
vLLM engine, environment variables and memory do not leak into the next):
  trl-vllm        TRL GRPOTrainer, use_vllm=True, vllm_mode="colocate"
  trl-vllm-reload the same, its weight sync's last call replaced by vLLM's `reload_weights`
                  (TRL 1.16 calls the model's `load_weights` per parameter, which vLLM 0.32 on
                  CPU refuses after start-up: "'Parameter' object has no attribute
                  'weight_loader'"); a figure for TRL's colocate mode once that is fixed
  trl             TRL GRPOTrainer, transformers generation
  ours-k0         our loop, vLLM rollouts, on-policy (max_steps_off_policy=0)
  ours-k1         our loop, vLLM rollouts one step off-policy (vLLM's engine core in its own
                  process, sampling step n+1 while step n trains)
  ours-k1-thread  the same with vLLM's engine core in this process, on the rollout thread
  ours-hf         our loop, transformers rollouts, on-policy
  ours-hf-k1      our loop, transformers rollouts (a copy of the model) one step off-policy
GPU (the issue's check: transformers generation, a randomly initialised ~1B model):
    python bench/bench_rl.py --device cuda --random-init 1b --sides trl,ours-hf,ours-hf-k1
The anchor for "x TRL" is trl-vllm when it ran, else trl (trl-vllm-reload is patched, so it
is reported beside the anchor, not as it).

Both sides: the same problems (generated), CoT prompts rendered by our renderer, the same
reward (`--reward parity`, the default: even-length text is right, so every group varies and
both sides train every step; `--reward grader`: our grader), LoRA rank 16, lr 1e-5, one
optimizer step per GRPO step, DAPO loss, no KL. The first step of each side is a warm-up and
is not counted; figures are medians of the rest. Per side: seconds per step and per phase
(generation, grading/scoring, forward/backward, weight sync; for ours off-policy the
generation runs on the rollout thread, overlapped, and "wait" is what the step waited for it)
and tokens per second (completion tokens sampled per step / seconds per step). The first line
is the CPU (bf16 matters for vLLM).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

SIDES = ("trl-vllm", "trl-vllm-reload", "trl", "ours-k0", "ours-k1", "ours-k1-thread", "ours-hf",
         "ours-hf-k1")
LABELS = {"trl-vllm": "TRL GRPOTrainer, vLLM colocate",
          "trl-vllm-reload": "TRL GRPOTrainer, vLLM colocate, sync via reload_weights",
          "trl": "TRL GRPOTrainer, transformers generation",
          "ours-k0": "ours, vLLM rollouts, on-policy",
          "ours-k1": "ours, vLLM rollouts, 1 step off-policy",
          "ours-k1-thread": "ours, vLLM (in-process) 1 step off-policy",
          "ours-hf": "ours, transformers rollouts, on-policy",
          "ours-hf-k1": "ours, transformers rollouts, 1 step off-policy"}


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


def _median(xs: list[float]) -> float:
    xs = xs[1:] if len(xs) > 1 else xs  # the first step is a warm-up
    return statistics.median(xs) if xs else 0.0


# -- TRL -------------------------------------------------------------------------------------
def _sync_through_reload(gen) -> None:
    """TRL's colocate weight sync with its last step replaced: the same merged, vLLM-named
    parameters (TRL's `_iter_named_params`), pushed through vLLM's `reload_weights` (what our
    engine calls) instead of the model's `load_weights` one parameter at a time."""

    def sync() -> None:
        weights = [(n, p.detach().clone()) for n, p in gen._iter_named_params()]
        gen.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        gen.llm.reset_prefix_cache()

    gen.sync_weights = sync


def run_trl(model_path: str, problems, args, use_vllm: bool, reload_sync: bool = False) -> dict:
    """Seconds per optimizer step of TRL's GRPOTrainer, split into phases by timing its own
    methods: generation (`_generate_single_turn`, weight sync included for vLLM), scoring and
    old log-probs (the rest of `_generate_and_score_completions`), forward/backward (the rest
    of `training_step`), weight sync (`vllm_generation.sync_weights`)."""
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    from aimo3_recipe.data.renderers import render_prompt
    from aimo3_recipe.models import LoraSettings, load_model, load_tokenizer

    tok = load_tokenizer(model_path)
    reward = make_reward(args.reward)

    def reward_fn(completions, answer, **_):
        return [reward(c, a).reward for c, a in zip(completions, answer)]

    model = load_model(model_path, device=args.device, dtype="float32",
                       lora=LoraSettings(r=16, alpha=32, dropout=0.0))
    data = Dataset.from_dict({"prompt": [render_prompt(tok, p.problem, "cot") for p in problems],
                              "answer": [p.answer for p in problems]})
    steps: list[dict] = []
    cur: dict = {}

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            cur.clear()
            cur["t0"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            steps.append({**cur, "step": time.perf_counter() - cur.pop("t0")})

    def timed(obj, name: str, key: str, count_tokens: bool = False):
        fn = getattr(obj, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            cur[key] = cur.get(key, 0.0) + time.perf_counter() - t0
            if count_tokens:  # (completion_ids, logprobs) or longer tuples
                ids = out[0] if len(out) == 2 else out[1]
                cur["tokens"] = cur.get("tokens", 0) + sum(len(x) for x in ids)
            return out

        setattr(obj, name, wrapper)

    vllm_kwargs = {}
    if use_vllm:
        vllm_kwargs = {"use_vllm": True, "vllm_mode": "colocate",
                       "vllm_max_model_length": 2048}
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # as our engine sets it
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) <= 8:  # as our engine does: the model's threads on every core
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    cfg = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), loss_type="dapo", beta=0.0,
        epsilon=0.2, epsilon_high=0.28, scale_rewards="none", temperature=args.temperature,
        learning_rate=1e-5, per_device_train_batch_size=args.batch_size * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens,
        gradient_accumulation_steps=1, max_steps=args.steps, report_to="none",
        use_cpu=args.device == "cpu",
        bf16=False, logging_steps=1, save_strategy="no", gradient_checkpointing=False,
        **vllm_kwargs)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward_fn, args=cfg, train_dataset=data,
                              processing_class=tok, callbacks=[Timer()])
    timed(trainer, "_generate_single_turn", "generation", count_tokens=True)
    timed(trainer, "_generate_and_score_completions", "rollouts")
    timed(trainer, "training_step", "train_step")
    if use_vllm:
        if reload_sync:
            _sync_through_reload(trainer.vllm_generation)
        timed(trainer.vllm_generation, "sync_weights", "weight_sync")
    trainer.train()
    rows = []
    for s in steps:
        gen = s.get("generation", 0.0)
        rows.append({"step": s["step"], "tokens": s.get("tokens", 0), "generation": gen,
                     "grading": s.get("rollouts", 0.0) - gen,
                     "train": s.get("train_step", 0.0) - s.get("rollouts", 0.0),
                     "weight_sync": s.get("weight_sync", 0.0)})
    return {"rows": rows}


# -- ours ------------------------------------------------------------------------------------
def run_ours(model_path: str, problems, args, use_vllm: bool, k: int) -> dict:
    from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
    from aimo3_recipe.utils.ml_log import read_metrics

    out = tempfile.mkdtemp(prefix="bench-ours-")
    cfg = RLMathConfig(model_name_or_path=model_path, output_dir=out, mode="cot",
                       group_size=args.group_size, batch_size=args.batch_size,
                       num_steps=args.steps, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, learning_rate=1e-5, lora_rank=16,
                       lora_alpha=32, eval_samples=0, save_steps=10_000, device_map=args.device,
                       torch_dtype="float32", use_vllm=use_vllm, max_steps_off_policy=k)
    RLMathTrainer(cfg, make_reward(args.reward)).train(problems)
    rows = []
    for r in read_metrics(out):
        if "time/step" not in r:
            continue
        tokens = r["rollouts/completion_tokens"] * r["groups/num"] * args.group_size
        rows.append({"step": r["time/step"], "tokens": tokens,
                     **{k_: r[f"time/{k_}"] for k_ in
                        ("generation", "grading", "train", "weight_sync", "rollout_wait",
                         "sampler_load") if f"time/{k_}" in r},
                     "trained": "train/optimizer_steps" in r,
                     "staleness": r.get("rollouts/staleness", 0.0)})
    return {"rows": rows}


def run_side(side: str, args) -> dict:
    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.models import resolve_model_path

    model_path = resolve_model_path(args.model)
    if args.random_init:
        model_path = random_model(model_path, args.random_init)
    problems = generate_synthetic(args.batch_size * args.steps, seed=7)
    if side == "ours-k1-thread":
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in this process
    if side.startswith("trl"):
        return run_trl(model_path, problems, args, use_vllm=side.startswith("trl-vllm"),
                       reload_sync=side == "trl-vllm-reload")
    k = 1 if side.endswith("k1") or side.startswith("ours-k1") else 0
    return run_ours(model_path, problems, args, use_vllm=not side.startswith("ours-hf"), k=k)


# hidden, mlp, layers, heads, kv heads (with the 49k vocabulary: ~1.2B, ~0.4B parameters;
# "tiny" for a smoke run of the bench itself)
SIZES = {"1b": (2048, 8192, 16, 32, 8), "350m": (1024, 4096, 20, 16, 4), "tiny": (64, 128, 2, 4, 2)}


def random_model(base: str, size: str) -> str:
    """A randomly initialised Llama of `size` with `base`'s tokenizer, saved once (seed 0)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from aimo3_recipe.models import load_tokenizer

    out = Path(tempfile.gettempdir()) / f"bench-rl-random-{size}"
    if (out / "config.json").is_file():
        return str(out)
    hidden, mlp, layers, heads, kv = SIZES[size]
    cfg = AutoConfig.from_pretrained(base)
    cfg.update({"hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": layers,
                "num_attention_heads": heads, "num_key_value_heads": kv,
                "head_dim": hidden // heads})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    return str(out)


# -- the report ------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict:
    step = _median([r["step"] for r in rows])
    out = {"s_per_step": step, "tokens_per_step": _median([r["tokens"] for r in rows])}
    for key in ("generation", "grading", "train", "weight_sync", "rollout_wait", "sampler_load"):
        if any(key in r for r in rows):
            out[f"{key}_s"] = _median([r.get(key, 0.0) for r in rows])
    out["tokens_per_s"] = out["tokens_per_step"] / step if step else 0.0
    if out.get("generation_s"):
        out["generation_tokens_per_s"] = out["tokens_per_step"] / out["generation_s"]
    out["steps"] = [round(r["step"], 2) for r in rows]
    skipped = sum(1 for r in rows if r.get("trained") is False)
    if skipped:
        out["steps_without_update"] = skipped
    return out


def print_line(side: str, fig: dict, anchor: float | None) -> None:
    phases = ", ".join(f"{k[:-2]} {fig[k]:.1f}" for k in
                       ("generation_s", "grading_s", "train_s", "weight_sync_s", "rollout_wait_s",
                        "sampler_load_s") if k in fig)
    speed = f" -> {anchor / fig['s_per_step']:.2f}x the anchor" if anchor else ""
    print(f"{LABELS[side]}: {fig['s_per_step']:.2f} s/step ({phases}); "
          f"{fig['tokens_per_s']:.1f} completion tokens/s (generation alone "
          f"{fig.get('generation_tokens_per_s', 0):.1f}); steps {fig['steps']}{speed}", flush=True)
    if fig.get("steps_without_update"):
        print(f"  ({fig['steps_without_update']} steps had no informative group and skipped "
              "the update)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch-size", type=int, default=4, help="problems per step")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=4, help="steps per side (first = warm-up)")
    parser.add_argument("--sides", default="trl-vllm,trl-vllm-reload,trl,ours-k0,ours-k1",
                        help=f"comma list of {', '.join(SIDES)}")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (both sides)")
    parser.add_argument("--random-init", choices=sorted(SIZES), default=None,
                        help="a randomly initialised model of this size, --model's tokenizer")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per side")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--reward", choices=("parity", "grader"), default="parity",
                        help="parity: every group varies, so every step trains (default)")
    parser.add_argument("--run-side", default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("AIMO3_PROGRESS", "0")
    if args.run_side:
        try:
            result = run_side(args.run_side, args)
        except BaseException as e:  # noqa: BLE001 -- reported by the parent, with the error
            result = {"error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()[-4000:]}
        Path(args.out).write_text(json.dumps(result))
        return 0

    from aimo3_recipe.utils.hardware import cpu_capability, vllm_cpu_dtype

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        parser.error(f"--sides: unknown {unknown}; choose from {', '.join(SIDES)}")
    cap = cpu_capability()
    print(f"{cap.describe()}; {os.cpu_count()} cores; vLLM on CPU {vllm_cpu_dtype('auto', cap)[0]}")
    print(f"model {args.model}; {args.batch_size} problems x {args.group_size} rollouts, "
          f"{args.max_new_tokens} new tokens, {args.steps} steps per side (first one warm-up), "
          f"LoRA r16, {args.reward} reward", flush=True)
    figures: dict[str, dict] = {}
    for side in sides:
        out = Path(tempfile.mkdtemp(prefix="bench-rl-")) / "result.json"
        cmd = [sys.executable, __file__, "--run-side", side, "--out", str(out)] + [
            a for a in sys.argv[1:]]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  check=False)
            result = json.loads(out.read_text()) if out.is_file() else {
                "error": f"exit {proc.returncode}", "traceback": proc.stderr[-4000:]}
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {args.timeout:.0f} s"}
        if "error" in result:
            print(f"{LABELS[side]}: FAILED after {time.perf_counter() - t0:.0f} s: "
                  f"{result['error']}", flush=True)
            if result.get("traceback"):
                print("  " + result["traceback"].strip().replace("\n", "\n  ")[-2500:])
            figures[side] = {"error": result["error"]}
            continue
        figures[side] = {**summarise(result["rows"]), "wall_s": time.perf_counter() - t0}
        anchor_side = next((s for s in ("trl-vllm", "trl") if "s_per_step" in
                            figures.get(s, {})), None)
        anchor = figures[anchor_side]["s_per_step"] if anchor_side and anchor_side != side \
            else None
        print_line(side, figures[side], anchor)
    anchor_side = next((s for s in ("trl-vllm", "trl") if "s_per_step" in figures.get(s, {})),
                       None)
    if anchor_side:
        print(f"anchor: {LABELS[anchor_side]} (goal: ours >= 2x per step)")
        for side in sides:
            if side.startswith("ours") and "s_per_step" in figures[side]:
                ratio = figures[anchor_side]["s_per_step"] / figures[side]["s_per_step"]
                print(f"  {LABELS[side]}: {ratio:.2f}x")
    if "s_per_step" in figures.get("ours-k0", {}) and "s_per_step" in figures.get("ours-k1", {}):
        gain = figures["ours-k0"]["s_per_step"] / figures["ours-k1"]["s_per_step"]
        print(f"off-policy (k=1) over on-policy: {gain:.2f}x per step")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
