"""The GRPO loop, written once for every backend (local torch, Tinker).

Each step: take `batch_size` problems in a seeded order (the same order after a resume),
sample `group_size` rollouts of each from the current policy (TIR or CoT, token-exact),
grade the model-written text, centre rewards per group and drop groups without correctness
variance (`sample_step`; with `dynamic_sampling`, refilled until `batch_size` groups vary),
then `ppo_epochs` passes of mini-batches through the backend's forward/backward and
optimizer step, sync the sampler, log, evaluate and checkpoint. With `max_steps_off_policy`
= k > 0 the sampling of step n+1 runs on a thread while step n trains, from the weights of
step n+1-k (overlap.py); k = 0 samples in line, on-policy. The departures from the GRPO
paper are listed in `rl/__init__.py`. Trainer log-probs are taken at temperature 1, the raw
distribution engines return as sampler log-probs, so ratios and the sampler gap compare like
with like.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Collection, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aimo3_recipe.config import replace_path
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.rl.advantages import assign_advantages
from aimo3_recipe.rl.backend import Backend
from aimo3_recipe.rl.batch import flatten_groups, make_batch, token_budget_parts
from aimo3_recipe.rl.checkpoints import read_state, save_checkpoint
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.rl.dynamic_sampling import draw_problems, fill_informative, replace_dropped
from aimo3_recipe.rl.overlap import make_rollouts
from aimo3_recipe.rl.rewards import MathRewardFunction, score_group
from aimo3_recipe.rl.rollouts import sample_groups
from aimo3_recipe.rl.types import Rollout, RolloutGroup, StepRollouts
from aimo3_recipe.utils.notice import notice

REFILL_SEED_STRIDE = 100_003  # dynamic sampling's round r samples with seed + step + r * this


def train(cfg: GRPOConfig, backend: Backend, problems: Sequence[MathRecord],
          reward_fn: MathRewardFunction, logger, run_dir: Path, *,
          eval_problems: Sequence[MathRecord] = (), start_step: int = 0,
          pool=None) -> list[dict[str, Any]]:
    """Run steps start_step+1 .. cfg.num_steps; return their metrics dicts."""
    if not problems:
        raise ValueError("RL needs at least one training problem")
    if cfg.max_steps_off_policy and not cfg.loss.tis_cap:
        notice(f"RL: max_steps_off_policy={cfg.max_steps_off_policy} trains on rollouts of older "
               "weights; truncated importance weights on (rl.loss.tis_cap 2.0; set "
               "--rl.loss.tis-cap to choose)")
        cfg = replace_path(cfg, "loss.tis_cap", 2.0)
    history = []
    main_rank = backend.rank == 0
    dropped = set(read_state(run_dir / "checkpoints", start_step).get("dropped_problems", [])
                  if cfg.drop_solved_problems and start_step else [])

    def produce(step: int, engine) -> StepRollouts:
        return sample_step(cfg, engine, problems, step, reward_fn, backend.rank,
                           backend.world_size, pool=pool, dropped=dropped)

    rollouts = make_rollouts(cfg, backend, produce, start_step)  # inline, or a thread k ahead
    try:
        if start_step == 0 and eval_problems and main_rank:
            with rollouts.eval_engine() as engine:
                logger.log(evaluate(cfg, engine, eval_problems, reward_fn, pool), 0)
        bar = _progress(range(start_step, cfg.num_steps), initial=start_step,
                        total=cfg.num_steps, disable=not main_rank)
        for step in bar:
            timer = PhaseTimer()
            with timer("rollout_wait"):  # all of sampling and grading when on-policy
                batch = rollouts.get(step)
            timer.add(batch.metrics)  # time/generation, time/grading
            with timer("train"):
                train_metrics = update(cfg, backend, batch.kept, batch.groups)
            with timer("weight_sync"):  # only when the weights changed
                changed = "train/optimizer_steps" in train_metrics
                train_metrics.update(rollouts.publish(step + 1, changed))
            if cfg.drop_solved_problems:
                dropped.update(g.problem for g in batch.groups if not g.informative)
            metrics = {**rollout_metrics(batch.groups), **batch.metrics, **train_metrics,
                       "rollouts/weight_version": float(batch.weight_version),
                       "rollouts/staleness": float(step - batch.weight_version),
                       **timer.metrics()}
            done = step + 1
            due = done == cfg.num_steps or (cfg.eval_steps and done % cfg.eval_steps == 0)
            if main_rank and eval_problems and due:
                with rollouts.eval_engine() as engine:
                    metrics.update(evaluate(cfg, engine, eval_problems, reward_fn, pool))
            if main_rank:
                log_step(cfg, logger, run_dir, metrics, batch.groups, done)
            if done % cfg.save_steps == 0 or done == cfg.num_steps:
                save_checkpoint(backend, run_dir / "checkpoints", done,
                                state={"dropped_problems": sorted(dropped)} if dropped else None)
            bar.set_postfix(reward=f"{metrics['reward/mean']:+.3f}",
                            acc=f"{metrics['samples/batch_accuracy']:.2f}")
            history.append(metrics)
    finally:
        rollouts.close()
    return history


def sample_step(cfg: GRPOConfig, engine, problems: Sequence[MathRecord], step: int,
                reward_fn: MathRewardFunction, rank: int = 0, world_size: int = 1, *,
                pool=None, dropped: Collection[str] = ()) -> StepRollouts:
    """Step `step`'s groups: its problems sampled on `engine` and graded, advantages set;
    with `dynamic_sampling`, refilled until `batch_size` groups vary (dynamic_sampling.py)."""
    seconds: Counter[str] = Counter()
    records = batch_records(problems, step, cfg.batch_size, cfg.seed, rank, world_size)

    def sample(recs: list[MathRecord], round_: int) -> list[RolloutGroup]:
        t0 = time.perf_counter()
        groups = sample_groups(engine, recs, mode=cfg.mode, group_size=cfg.group_size,
                               temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                               max_tool_calls=cfg.max_tool_calls,
                               seed=cfg.seed + step + REFILL_SEED_STRIDE * round_, pool=pool)
        t1 = time.perf_counter()
        for group in groups:
            score_group(group, reward_fn)
        seconds["time/generation"] += t1 - t0
        seconds["time/grading"] += time.perf_counter() - t1
        return groups

    if not cfg.dynamic_sampling:
        groups = sample(records, 0)
        kept, adv_stats = assign_advantages(groups, scale_by_std=cfg.scale_by_std)
        return StepRollouts(groups, kept, {**adv_stats.metrics(), **seconds})
    if dropped:
        records = replace_dropped(records, problems, dropped, seed=cfg.seed, step=step, rank=rank)

    def draw(n: int, round_: int) -> list[MathRecord]:
        return draw_problems(problems, n, seed=cfg.seed, step=step, round_=round_, rank=rank,
                             dropped=dropped)

    groups, kept, adv_stats, stats = fill_informative(
        records, sample, draw, batch_size=cfg.batch_size, max_rounds=cfg.max_sampling_rounds,
        scale_by_std=cfg.scale_by_std)
    return StepRollouts(groups, kept, {**adv_stats.metrics(), **stats.metrics(), **seconds,
                                       "sampling/dropped_problems": float(len(dropped))})


def log_step(cfg: GRPOConfig, logger, run_dir: Path, metrics: dict[str, Any],
             groups: list[RolloutGroup], done: int) -> None:
    """metrics.jsonl (and the sinks), the summary line, samples.jsonl (main rank only)."""
    logger.log(metrics, done)
    if done % cfg.logging_steps == 0 or done == cfg.num_steps:
        notice(summary_line(metrics, done, cfg.num_steps))
    if cfg.save_samples:
        rows = write_samples(run_dir / cfg.samples_filename, groups, done, cfg)
        logger.log_samples("samples", rows, done)  # a W&B table when W&B is on


def summary_line(m: dict[str, Any], step: int, num_steps: int) -> str:
    """One line per logged step; a high truncation rate is said loudly (truncated rollouts
    earn the incorrect reward, so they teach brevity whatever the answer)."""
    line = (f"[rl] step {step}/{num_steps}: reward {m['reward/mean']:+.3f}, accuracy "
            f"{m['rollouts/accuracy']:.2f}, boxed {m['rollouts/boxed_rate']:.2f}, truncated "
            f"{m['rollouts/truncated_rate']:.2f}, zero-variance groups "
            f"{m['groups/frac_zero_variance']:.2f}, {m['time/step']:.1f} s")
    if "eval/accuracy" in m:
        line += f"; held-out accuracy {m['eval/accuracy']:.3f}"
    if m["rollouts/truncated_rate"] > 0.5:
        line += " -- WARNING: most rollouts hit max_new_tokens (raise it, or the reward teaches "
        line += "brevity)"
    return line


def update(cfg: GRPOConfig, backend: Backend, groups: list[RolloutGroup],
           every_group: list[RolloutGroup]) -> dict[str, float]:
    """`ppo_epochs` passes over the kept rollouts in mini-batches; one optimizer step each.
    With several ranks, each runs the same number of steps and backward passes (a rank with
    fewer rollouts fills in zero-advantage passes), since gradients are averaged in them."""
    rollouts, advantages = flatten_groups(groups)
    if backend.reduce(len(rollouts), "max") == 0:  # all groups all-right or all-wrong
        return {"train/skipped_step": 1.0}
    pad = backend.tokenizer.pad_token_id
    size = cfg.mini_batch_size or max(1, len(rollouts))
    plan = [micro_batches(list(range(s, min(s + size, len(rollouts)))), rollouts, cfg)
            for s in range(0, len(rollouts), size)]
    if backend.world_size > 1:
        steps = int(backend.reduce(len(plan), "max"))
        parts = int(backend.reduce(max((len(p) for p in plan), default=1), "max"))
        plan = [p + [[]] * (parts - len(p)) for p in plan + [[]] * (steps - len(plan))]
    filler = every_group[0].rollouts[0]  # a zero-advantage pass adds nothing to the gradient
    on_policy = cfg.ppo_epochs == 1 and len(plan) == 1
    # the policy the ratios are taken against: the trainer before this step's updates
    old = None if on_policy or not rollouts else _row_logprobs(backend, rollouts, advantages, pad)
    sums: Counter[str] = Counter()
    count = 0
    for _epoch in range(cfg.ppo_epochs):
        for step_parts in plan:
            local = sum(rollouts[i].num_model_tokens for part in step_parts for i in part)
            # token-level mean over the step's tokens on all ranks (DDP averages gradients)
            num_tokens = max(backend.reduce(local, "sum"), 1) / backend.world_size
            for part in step_parts:
                if part:
                    batch = make_batch([rollouts[i] for i in part],
                                       [advantages[i] for i in part], pad)
                    old_part = None if old is None else _pad_rows(
                        [old[i] for i in part], batch.input_ids_B_L.shape[1])
                else:
                    batch, old_part = make_batch([filler], [0.0], pad), None
                m = backend.forward_backward(batch, old_logprobs=old_part, num_tokens=num_tokens,
                                             loss=cfg.loss)
                if part:
                    sums.update(m)
                    count += 1
            sums.update(backend.optim_step())
    steps = cfg.ppo_epochs * len(plan)
    out = {k: v / max(count, 1) for k, v in sums.items() if k != "train/grad_norm"}
    out["train/loss"] = sums["train/loss"] / steps  # the parts' losses add up to a step's
    out["train/grad_norm"] = sums["train/grad_norm"] / steps
    out["train/optimizer_steps"] = float(steps)
    return out


def _split(idx: list[int], parts: int) -> list[list[int]]:
    k = max(1, -(-len(idx) // parts))
    return [idx[i:i + k] for i in range(0, len(idx), k)]


def micro_batches(idx: list[int], rollouts: list[Rollout], cfg: GRPOConfig) -> list[list[int]]:
    """One mini-batch's micro-batches: `gradient_accumulation_steps` parts, each cut further
    to `max_tokens_per_microbatch` padded tokens (0: no budget)."""
    lengths = {i: len(rollouts[i].prompt_ids) + len(rollouts[i].tokens) for i in idx}
    return [sub for part in _split(idx, cfg.gradient_accumulation_steps)
            for sub in token_budget_parts(part, lengths, cfg.max_tokens_per_microbatch)]


def _row_logprobs(backend: Backend, rollouts: list[Rollout], advantages: list[float], pad: int):
    batch = make_batch(rollouts, advantages, pad)
    lp = backend.logprobs(batch).cpu()
    return [lp[b, : len(r.prompt_ids) + len(r.tokens)] for b, r in enumerate(rollouts)]


def _pad_rows(rows, length: int):
    import torch

    out = torch.zeros(len(rows), length)
    for b, row in enumerate(rows):
        out[b, : row.shape[0]] = row
    return out


def batch_records(problems: Sequence[MathRecord], step: int, batch_size: int, seed: int,
                  rank: int = 0, world_size: int = 1) -> list[MathRecord]:
    """This rank's problems of `step`: a seeded permutation per epoch, read in order, so the
    same step gets the same problems after a resume; ranks take disjoint slices."""
    n = len(problems)
    out = []
    start = (step * world_size + rank) * batch_size
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        order = list(range(n))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        out.append(problems[order[i]])
    return out


def rollout_metrics(groups: list[RolloutGroup]) -> dict[str, float]:
    """What the step's rollouts looked like (rewards, accuracy, format, length, tools, grader)."""
    rewards = [x for g in groups for x in g.rewards_G]
    rollouts = [r for g in groups for r in g.rollouts]
    n = max(1, len(rollouts))
    mean = sum(rewards) / max(1, len(rewards))
    std = (sum((x - mean) ** 2 for x in rewards) / max(1, len(rewards))) ** 0.5
    accuracy = sum(c for g in groups for c in g.correct_G) / n
    status = Counter(s for g in groups for s in g.grader_status_G)
    return {
        "reward/mean": mean, "reward/std": std,
        "samples/batch_mean_reward": mean, "samples/batch_accuracy": accuracy,
        "rollouts/accuracy": accuracy,
        "rollouts/boxed_rate": sum(b for g in groups for b in g.boxed_G) / n,
        "rollouts/truncated_rate": sum(r.truncated for r in rollouts) / n,
        "rollouts/completion_tokens": sum(r.num_model_tokens for r in rollouts) / n,
        "rollouts/tool_calls": sum(r.num_tool_calls for r in rollouts) / n,
        "rollouts/tool_errors": sum(r.num_tool_errors for r in rollouts) / n,
        # sandbox seconds summed over rollouts (they overlap with generation, which waits less)
        "time/tools": sum(r.tool_seconds for r in rollouts),
        "grader/timeouts": float(status["timeout"]),
        "grader/too_complex": float(status["too_complex"]),
        "grader/errors": float(status["error"]),
    }


def evaluate(cfg: GRPOConfig, engine, problems: Sequence[MathRecord],
             reward_fn: MathRewardFunction, pool=None) -> dict[str, float]:
    """Greedy accuracy on held-out problems with the current policy (sampled on `engine`)."""
    t0 = time.perf_counter()
    groups = sample_groups(engine, problems, mode=cfg.mode, group_size=1,
                           temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                           max_tool_calls=cfg.max_tool_calls, pool=pool)
    for group in groups:
        score_group(group, reward_fn)
    n = max(1, len(groups))
    return {"eval/accuracy": sum(g.correct_G[0] for g in groups) / n,
            "eval/boxed_rate": sum(g.boxed_G[0] for g in groups) / n,
            "eval/avg_completion_length": sum(g.rollouts[0].num_model_tokens for g in groups) / n,
            "eval/num_problems": float(len(groups)),
            "time/eval": time.perf_counter() - t0}


def write_samples(path: Path, groups: list[RolloutGroup], step: int,
                  cfg: GRPOConfig) -> list[dict[str, Any]]:
    """Append a seeded `sample_save_rate` fraction of the step's rollouts (at least one) and
    return them."""
    rng = random.Random(cfg.seed * 7919 + step)
    flat = [(g, i) for g in groups for i in range(g.size)]
    chosen = [x for x in flat if rng.random() < cfg.sample_save_rate] or [rng.choice(flat)]
    rows = []
    for g, i in chosen:
        r = g.rollouts[i]
        rows.append({
            "step": step, "prompt": g.problem, "completion": r.text, "model_text": r.model_text,
            "reward": g.rewards_G[i], "advantage": g.advantages_G[i], "correct": g.correct_G[i],
            "extracted_answer": g.extracted_G[i], "ground_truth": g.answer,
            "grader_status": g.grader_status_G[i], "finish_reason": r.finish_reason,
            "tool_calls": r.num_tool_calls, "tool_errors": r.num_tool_errors,
            "num_tokens": r.num_model_tokens, "group_informative": g.informative,
            "weight_version": g.weight_version})
    with Path(path).open("a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


class PhaseTimer:
    """Seconds per named phase of a step: `with timer("generation"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, metrics: dict[str, float]) -> None:
        """Take the `time/...` entries of `metrics` (phases timed elsewhere) as phases."""
        for k, v in metrics.items():
            if k.startswith("time/"):
                self.seconds[k[len("time/"):]] = self.seconds.get(k[len("time/"):], 0.0) + v

    def metrics(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.seconds.items()}
        out["time/step"] = time.perf_counter() - self.start
        return out


def _progress(iterable, *, initial: int, total: int, disable: bool):
    import os
    import sys

    from tqdm.auto import tqdm

    quiet = not (sys.stderr.isatty() or os.environ.get("AIMO3_PROGRESS") == "1")
    return tqdm(iterable, desc="RL", initial=initial, total=total, disable=disable or quiet,
                dynamic_ncols=True)
