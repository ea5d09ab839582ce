"""RL sanity check: on a small fixed set of problems the start policy solves sometimes, the
training reward must climb step after step. A sign error in the advantages, a loss mask on
the wrong tokens or an update that ignores the advantages shows up here first (flipping the
advantage sign by hand makes this test fail: the reward falls instead).

The policy is the tiny random model (conftest), so the "problems" are a learnable stand-in:
a rollout is correct when its text contains the problem's answer digit. The start model
writes one by chance in ~1/4 of its rollouts, so groups are informative; full fine-tuning
at a high rate makes the reward learnable in a few dozen steps (~20 s on a shared 2-core CPU).
The real loop runs end to end: HF sampling, rewards, advantages, the clipped loss, updates.
"""

from __future__ import annotations

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.rl.rewards import RewardResult
from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
from aimo3_recipe.utils.ml_log import read_metrics

PROBLEMS = [MathRecord(problem=f"Write the digit {d}.", solution="", answer=str(d),
                       source="sanity") for d in (1, 3, 5, 7)]


def contains_answer(text, ground_truth, truncated=False, problem=None) -> RewardResult:
    """Correct (+1) when the answer digit appears in the rollout's text, else 0."""
    ok = ground_truth in text
    return RewardResult(1.0 if ok else 0.0, ok, False, ground_truth if ok else None, "ok",
                        truncated)


def _window_mean(rows, lo: int, hi: int) -> float:
    return sum(r["reward/mean"] for r in rows[lo:hi]) / (hi - lo)


def test_rl_raises_the_training_reward_on_a_fixed_set(tmp_path, tiny_model_dir):
    steps = 24
    cfg = RLMathConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path),
                       mode="cot", group_size=8, batch_size=4, num_steps=steps,
                       max_new_tokens=8, learning_rate=3e-3, temperature=1.0, eval_samples=0,
                       save_steps=steps, device_map="cpu", use_lora=False, use_vllm=False,
                       seed=0)
    RLMathTrainer(cfg, contains_answer).train(PROBLEMS)
    rows = [r for r in read_metrics(tmp_path) if "reward/mean" in r]
    assert len(rows) == steps
    first, middle, last = (_window_mean(rows, 0, 6), _window_mean(rows, 9, 15),
                           _window_mean(rows, steps - 6, steps))
    assert 0.03 < first < 0.6, f"the start policy must solve the set sometimes; got {first:.2f}"
    # step after step: each third of the run beats the one before, and clearly overall
    assert first < middle < last, [round(r["reward/mean"], 2) for r in rows]
    assert last > first + 0.25, [round(r["reward/mean"], 2) for r in rows]
