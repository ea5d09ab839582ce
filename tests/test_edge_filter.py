"""Problems at the edge of the start policy's ability, chosen once before RL."""

from __future__ import annotations

import json

import pytest

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.edge_filter import FILENAME, at_edge
from aimo3_recipe.rl.rewards import RewardResult
from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
from aimo3_recipe.utils.ml_log import read_metrics


def test_at_edge_by_hand():
    assert at_edge([0, 1, 3, 4, 2], 4) == [False, True, True, False, True]
    assert at_edge([], 8) == []


def by_answer(text, ground_truth, truncated=False, problem=None) -> RewardResult:
    """'always' is always solved, 'never' never, 'parity' when the text has even length."""
    ok = {"always": True, "never": False}.get(ground_truth, len(text) % 2 == 0)
    return RewardResult(1.0 if ok else 0.0, ok, False, None, "ok", truncated)


def _cfg(model_dir, out, **kw) -> RLMathConfig:
    base = {"model_name_or_path": str(model_dir), "output_dir": str(out), "mode": "cot",
            "group_size": 4, "batch_size": 2, "num_steps": 2, "max_new_tokens": 8,
            "learning_rate": 1e-3, "eval_samples": 0, "save_steps": 1, "device_map": "cpu",
            "use_lora": False, "temperature": 1.0, "use_vllm": False,
            "edge_filter_samples": 6}
    base.update(kw)
    return RLMathConfig(**base)


def test_only_sometimes_solved_problems_are_trained_on_and_kept_on_resume(tmp_path,
                                                                          tiny_model_dir):
    problems = [MathRecord(f"Problem {i}: {a}", "", a, "test")
                for i, a in enumerate(["always", "never", "parity", "parity", "always"])]
    RLMathTrainer(_cfg(tiny_model_dir, tmp_path, save_samples=True, sample_save_rate=1.0),
                  by_answer).train(problems)
    kept = [json.loads(line) for line in (tmp_path / FILENAME).read_text().splitlines()]
    assert [k["answer"] for k in kept] == ["parity", "parity"]
    trained = [json.loads(line) for line in (tmp_path / "samples.jsonl").open()]
    assert len(trained) == 2 * 2 * 4 and {s["ground_truth"] for s in trained} == {"parity"}
    assert [r["step"] for r in read_metrics(tmp_path) if "reward/mean" in r] == [1, 2]
    # a longer rerun resumes from step 2 and trains on the same chosen set, read back
    (tmp_path / FILENAME).write_text(json.dumps(kept[0]) + "\n")
    RLMathTrainer(_cfg(tiny_model_dir, tmp_path, num_steps=3, save_samples=True,
                       sample_save_rate=1.0), by_answer).train(problems)
    step3 = [json.loads(line) for line in (tmp_path / "samples.jsonl").open()]
    step3 = [s for s in step3 if s["step"] == 3]
    assert step3 and {s["prompt"] for s in step3} == {kept[0]["problem"]}


def test_one_sample_cannot_measure_a_pass_rate(tmp_path):
    with pytest.raises(ConfigError, match="edge_filter_samples"):
        RLMathConfig(output_dir=str(tmp_path), edge_filter_samples=1)
