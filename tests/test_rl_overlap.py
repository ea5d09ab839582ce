"""Rollout scheduling (rl/overlap.py, rl/dynamic_sampling.py) on a tiny random model and on
fake samplers: max_steps_off_policy=0 is the on-policy loop step for step (the reference
loop below composes the primitives as the loop did before the rollout thread existed);
k=1 never trains on rollouts older than one step, and the version each rollout logs is the
one that sampled it; dynamic sampling keeps only groups that vary and its refill stops at
its bound. CPU, a few seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.synthetic import generate_synthetic
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.rl.dynamic_sampling import (
    draw_problems,
    fill_informative,
    refill_size,
    replace_dropped,
)
from aimo3_recipe.rl.rewards import RewardResult
from aimo3_recipe.rl.types import Rollout, RolloutGroup
from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
from aimo3_recipe.utils.ml_log import read_metrics


class ParityReward:
    """Even-length text is 'correct': a random model's groups vary."""

    def __call__(self, text, ground_truth, truncated=False, problem=None):
        ok = len(text) % 2 == 0
        return RewardResult(1.0 if ok else -0.5, ok, False, None, "ok", truncated)


class NullLogger:
    def log(self, metrics, step):
        pass

    def log_samples(self, *a, **k):
        pass


def _cfg(model_dir, out, **kw) -> RLMathConfig:
    base = {"model_name_or_path": str(model_dir), "output_dir": str(out), "mode": "cot",
            "group_size": 4, "batch_size": 2, "num_steps": 3, "max_new_tokens": 12,
            "learning_rate": 1e-2, "eval_samples": 0, "save_steps": 100, "device_map": "cpu",
            "use_lora": False, "temperature": 1.0, "use_vllm": False}
    base.update(kw)
    return RLMathConfig(**base)


def _backend(model_dir, lr: float):
    from aimo3_recipe.models import load_model, load_tokenizer
    from aimo3_recipe.rl.local_backend import LocalBackend

    model = load_model(str(model_dir), device="cpu", dtype="auto")
    return LocalBackend(model, load_tokenizer(str(model_dir)), learning_rate=lr)


def _reference_loop(cfg, backend, problems, reward):
    """The on-policy step as rl/loop.py ran it before overlap existed: draw, sample on the
    live policy with seed + step, grade, advantages, update, sync."""
    from aimo3_recipe.rl.advantages import assign_advantages
    from aimo3_recipe.rl.loop import batch_records, rollout_metrics, update
    from aimo3_recipe.rl.rewards import score_group
    from aimo3_recipe.rl.rollouts import sample_groups

    rows = []
    for step in range(cfg.num_steps):
        records = batch_records(problems, step, cfg.batch_size, cfg.seed)
        groups = sample_groups(backend.sampler(), records, mode=cfg.mode,
                               group_size=cfg.group_size, temperature=cfg.temperature,
                               max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + step)
        for g in groups:
            score_group(g, reward)
        kept, stats = assign_advantages(groups, scale_by_std=cfg.scale_by_std)
        m = update(cfg, backend, kept, groups)
        if "train/optimizer_steps" in m:
            backend.sync_sampler()
        rows.append({**rollout_metrics(groups), **stats.metrics(), **m})
    return rows


def test_off_policy_zero_is_the_on_policy_loop(tmp_path, tiny_model_dir):
    from aimo3_recipe.rl.loop import train

    problems = generate_synthetic(8, seed=1)
    cfg = _cfg(tiny_model_dir, tmp_path, num_steps=3).rl  # the loop's section
    torch.manual_seed(0)
    ref_backend = _backend(tiny_model_dir, cfg.learning_rate)
    ref = _reference_loop(cfg, ref_backend, problems, ParityReward())
    torch.manual_seed(0)
    backend = _backend(tiny_model_dir, cfg.learning_rate)
    got = train(cfg, backend, problems, ParityReward(), NullLogger(), tmp_path)
    assert len(got) == len(ref) == 3
    assert any("train/loss" in r for r in ref)
    for r, g in zip(ref, got):
        for k, v in r.items():
            if not k.startswith("time/"):
                assert g[k] == v, k  # exactly: the same computation in the same order
        assert g["rollouts/staleness"] == 0.0
    for (n, a), (_, b) in zip(ref_backend.policy.named_parameters(),
                              backend.policy.named_parameters()):
        assert torch.equal(a, b), n


def _samples(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_one_step_off_policy_never_trains_on_older_rollouts(tmp_path, tiny_model_dir):
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.models import load_model, load_tokenizer
    from aimo3_recipe.rl.loop import batch_records
    from aimo3_recipe.rl.rollouts import sample_groups

    problems = generate_synthetic(12, seed=2)
    cfg = _cfg(tiny_model_dir, tmp_path / "k1", num_steps=4, max_steps_off_policy=1,
               save_samples=True, sample_save_rate=1.0)
    RLMathTrainer(cfg, ParityReward()).train(problems)
    rows = read_metrics(tmp_path / "k1")
    samples = _samples(tmp_path / "k1")
    assert len(samples) == 4 * 2 * 4  # every rollout of every step
    for s in samples:  # samples.jsonl "step" counts from 1; step n trains after n-1 updates
        assert 0 <= (s["step"] - 1) - s["weight_version"] <= 1
    assert {s["weight_version"] for s in samples if s["step"] == 3} == {1}  # one step stale
    assert [r["rollouts/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    trained = [r for r in rows if "train/loss" in r]
    assert trained and all("train/tis_capped_frac" in r for r in trained)  # TIS switched on
    # the logged version is the one that sampled: step 2 drew from the initial weights
    tok = load_tokenizer(str(tiny_model_dir))
    engine = HFEngine(load_model(str(tiny_model_dir), device="cpu"), tok)
    groups = sample_groups(engine, batch_records(problems, 1, 2, cfg.rl.seed), mode="cot",
                           group_size=4, temperature=1.0, max_new_tokens=12,
                           seed=cfg.rl.seed + 1)
    expect = sorted(r.text for g in groups for r in g.rollouts)
    assert sorted(s["completion"] for s in samples if s["step"] == 2) == expect
    # a fixed lag, not "the newest weights": a second run repeats the first
    RLMathTrainer(_cfg(tiny_model_dir, tmp_path / "again", num_steps=4, max_steps_off_policy=1),
                  ParityReward()).train(problems)
    again = read_metrics(tmp_path / "again")
    assert [r["reward/mean"] for r in again] == [r["reward/mean"] for r in rows]
    assert [r.get("train/loss") for r in again] == pytest.approx(
        [r.get("train/loss") for r in rows], abs=1e-6)


def test_rollout_thread_errors_reach_the_training_thread(tmp_path, tiny_model_dir):
    class Broken(ParityReward):
        def __call__(self, *a, **k):
            raise RuntimeError("grader exploded")

    cfg = _cfg(tiny_model_dir, tmp_path, max_steps_off_policy=1)
    with pytest.raises(RuntimeError, match="grader exploded"):
        RLMathTrainer(cfg, Broken()).train(generate_synthetic(8, seed=1))


# -- dynamic sampling ------------------------------------------------------------------------
def _records(names: list[str]) -> list[MathRecord]:
    return [MathRecord(problem=n, solution="", answer="1", source="test") for n in names]


def _fake_sampler(informative: set[str], tokens: int = 3):
    """sample(records, round): a scored group per record that varies iff its problem is in
    `informative`; records every call."""
    calls: list[tuple[list[str], int]] = []

    def sample(records, round_):
        calls.append(([r.problem for r in records], round_))
        out = []
        for r in records:
            correct = [True, False] if r.problem in informative else [False, False]
            rs = [Rollout([1], [5] * tokens, [1] * tokens, [0.0] * tokens, "t", "t")
                  for _ in correct]
            out.append(RolloutGroup(r.problem, "1", rs, rewards_G=[1.0 if c else -0.5
                                                                  for c in correct],
                                    correct_G=correct, boxed_G=[False] * 2,
                                    extracted_G=[None] * 2, grader_status_G=["ok"] * 2))
        return out

    return sample, calls


def test_dynamic_sampling_keeps_only_groups_that_vary():
    pool = _records([f"p{i}" for i in range(40)])
    sample, calls = _fake_sampler({f"p{i}" for i in range(0, 40, 3)})

    def draw(n, round_):
        return draw_problems(pool, n, seed=0, step=0, round_=round_)

    groups, kept, adv, stats = fill_informative(pool[:4], sample, draw, batch_size=4,
                                                max_rounds=10)
    assert len(kept) == 4 and all(len(set(g.correct_G)) > 1 for g in kept)
    assert all(any(a != 0 for a in g.advantages_G) for g in kept)
    untrained = [g for g in groups if all(g is not k for k in kept)]
    assert all(a == 0.0 for g in untrained for a in g.advantages_G)
    assert stats.rounds == len(calls) > 1 and stats.groups_drawn == len(groups)
    m = stats.metrics()
    assert m["sampling/short"] == 0.0
    # every refill rollout here has 3 tokens: extra generation = refill groups / first draw
    assert m["sampling/extra_generation_frac"] == pytest.approx((len(groups) - 4) / 4)
    assert adv.num_dropped == len(groups) - 4


def test_dynamic_sampling_refill_stops_at_its_bound():
    pool = _records([f"p{i}" for i in range(40)])
    sample, calls = _fake_sampler(set())  # nothing ever varies

    def draw(n, round_):
        return draw_problems(pool, n, seed=0, step=0, round_=round_)

    groups, kept, _, stats = fill_informative(pool[:4], sample, draw, batch_size=4,
                                              max_rounds=3)
    assert len(calls) == 3 and [r for _, r in calls] == [0, 1, 2]
    assert kept == [] and stats.rounds == 3 and stats.metrics()["sampling/short"] == 1.0
    assert len(groups) == 12


def test_refill_size_follows_the_informative_rate():
    assert refill_size(need=3, informative=0, drawn=4, batch_size=8) == 8
    assert refill_size(need=2, informative=1, drawn=4, batch_size=8) == 8  # 2 * 4 / 1, capped
    assert refill_size(need=1, informative=2, drawn=4, batch_size=8) == 2


def test_draws_are_seeded_and_skip_dropped_problems():
    pool = _records([f"p{i}" for i in range(10)])
    a = draw_problems(pool, 4, seed=1, step=3, round_=1, dropped={"p0", "p1"})
    assert a == draw_problems(pool, 4, seed=1, step=3, round_=1, dropped={"p0", "p1"})
    assert len({r.problem for r in a}) == 4 and not {"p0", "p1"} & {r.problem for r in a}
    batch = pool[:3]
    swapped = replace_dropped(batch, pool, {"p1"}, seed=1, step=0)
    names = [r.problem for r in swapped]
    assert "p1" not in names and len(set(names)) == 3 and names[:2] == ["p0", "p2"]
    assert replace_dropped(batch, pool[:3], {"p1"}, seed=1, step=0) == batch  # none left


def test_dynamic_sampling_in_the_loop_logs_its_cost(tmp_path, tiny_model_dir):
    cfg = _cfg(tiny_model_dir, tmp_path, num_steps=2, dynamic_sampling=True,
               max_sampling_rounds=2, drop_solved_problems=True, save_steps=1)
    RLMathTrainer(cfg, ParityReward()).train(generate_synthetic(12, seed=4))
    rows = read_metrics(tmp_path)
    for r in rows:
        assert 1 <= r["sampling/rounds"] <= 2 and r["groups/num"] == r["sampling/groups_drawn"]
        assert r["sampling/extra_generation_frac"] >= 0 and "sampling/dropped_problems" in r
        assert (r["sampling/rounds"] > 1) == (r["sampling/extra_generation_frac"] > 0)


def test_scheduling_fields_are_checked():
    with pytest.raises(ConfigError, match="max_steps_off_policy"):
        GRPOConfig(max_steps_off_policy=-1)
    with pytest.raises(ConfigError, match="max_sampling_rounds"):
        GRPOConfig(max_sampling_rounds=0)
    with pytest.raises(ConfigError, match="drop_solved_problems needs dynamic_sampling"):
        GRPOConfig(drop_solved_problems=True)
