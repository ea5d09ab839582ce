"""The RL stage end to end on a tiny random model: the real CLI writes metrics.jsonl and
samples.jsonl with the documented fields; parameters move; a run killed mid-step resumes
from its last checkpoint and ends with the same metrics as an uninterrupted one; two CPU
processes (gloo) train one policy with gradients averaged across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aimo3_recipe.data.synthetic import generate_synthetic
from aimo3_recipe.rl.rewards import RewardResult
from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer
from aimo3_recipe.utils.ml_log import read_metrics

STEP_KEYS = ["reward/mean", "reward/std", "rollouts/accuracy", "rollouts/boxed_rate",
             "groups/frac_zero_variance", "rollouts/truncated_rate", "rollouts/completion_tokens",
             "rollouts/tool_calls", "rollouts/tool_errors", "grader/timeouts",
             "samples/batch_accuracy", "samples/batch_mean_reward", "time/generation",
             "time/grading", "time/train", "time/weight_sync", "time/step"]
TRAIN_KEYS = ["train/loss", "train/clip_frac_low", "train/clip_frac_high", "train/entropy",
              "train/sampler_logprob_gap", "train/grad_norm"]
SAMPLE_KEYS = ["prompt", "completion", "reward", "advantage", "correct", "extracted_answer",
               "ground_truth", "tool_calls", "step"]


class ParityReward:
    """A reward that varies within every group (even-length text is 'correct'), so a random
    model gets a learning signal; the real grader would mark all of its answers wrong."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls, self.fail_on_call = 0, fail_on_call

    def __call__(self, text, ground_truth, truncated=False, problem=None):
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        ok = len(text) % 2 == 0
        return RewardResult(1.0 if ok else -0.5, ok, False, None, "ok", truncated)


def _cfg(model_dir, out, **kw) -> RLMathConfig:
    base = {"model_name_or_path": str(model_dir), "output_dir": str(out), "mode": "cot",
            "group_size": 4, "batch_size": 2, "num_steps": 3, "max_new_tokens": 12,
            "learning_rate": 1e-2, "eval_samples": 0, "save_steps": 1, "device_map": "cpu",
            "use_lora": False, "temperature": 1.0, "use_vllm": False}
    base.update(kw)
    return RLMathConfig(**base)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(next(Path(folder).glob("*.safetensors"))))


def test_cli_rl_stage_writes_metrics_and_samples(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "aimo3_recipe.training.train", "--stage", "rl",
           "--base-model", str(tiny_model_dir), "--output-dir", str(out), "--rl.mode", "tir",
           "--rl.num-steps", "2", "--rl.batch-size", "2", "--rl.group-size", "3",
           "--rl.max-new-tokens", "12", "--save-samples", "--sample-save-rate", "1.0",
           "--eval-steps", "1", "--eval-samples", "2", "--device", "cpu", "--use-vllm", "false",
           "--rl.temperature", "1.0", "--rl.dataset", "synthetic"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                         env={**os.environ, "AIMO3_PROGRESS": "0"})
    assert res.returncode == 0, res.stderr[-3000:]
    run = out / "rl"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        assert all(k in r for k in STEP_KEYS), sorted(set(STEP_KEYS) - set(r))
        assert r["eval/num_problems"] == 2 and "eval/accuracy" in r and "eval/boxed_rate" in r
        assert "eval/avg_completion_length" in r
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2 * 3  # rate 1.0: every rollout of both steps
    assert all(k in s for s in samples for k in SAMPLE_KEYS)
    config = json.loads((run / "config.json").read_text())
    assert config["rl"]["mode"] == "tir" and config["rl"]["group_size"] == 3
    assert (run / "model" / "config.json").is_file() and (run / "adapter").is_dir()


def test_parameters_move_and_train_metrics_are_logged(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    model = RLMathTrainer(_cfg(tiny_model_dir, out, num_steps=2), ParityReward()).train(
        generate_synthetic(8, seed=1))
    rows = read_metrics(out)
    trained = [r for r in rows if "train/loss" in r]
    assert trained, "no step had an informative group"
    assert all(k in r for r in trained for k in TRAIN_KEYS)
    assert all(r["train/sampler_logprob_gap"] < 1e-3 for r in trained)  # HF engine = trainer
    before, after = _weights(tiny_model_dir), _weights(model)
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_killed_run_resumes_with_the_same_metrics(tmp_path, tiny_model_dir):
    data = generate_synthetic(12, seed=2)
    full = tmp_path / "full"
    RLMathTrainer(_cfg(tiny_model_dir, full, num_steps=4), ParityReward()).train(data)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):  # dies grading step 3, after checkpoint step-2
        RLMathTrainer(_cfg(tiny_model_dir, cut, num_steps=4),
                      ParityReward(fail_on_call=2 * 2 * 4 + 3)).train(data)
    assert max(p.name for p in (cut / "checkpoints").iterdir()) == "step-2"
    RLMathTrainer(_cfg(tiny_model_dir, cut, num_steps=4), ParityReward()).train(data)
    a, b = read_metrics(full), read_metrics(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4]  # nothing logged twice
    for ra, rb in zip(a, b):
        assert ra["reward/mean"] == rb["reward/mean"]
        if "train/loss" in ra:
            assert rb["train/loss"] == pytest.approx(ra["train/loss"], abs=1e-6)
    wa, wb = _weights(full / "model"), _weights(cut / "model")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_two_processes_average_gradients(tmp_path, tiny_model_dir):
    """torchrun, 2 CPU processes (gloo): each rank samples its own problems, yet after every
    step both hold the same weights, and they differ from a one-process run on rank 0's data
    alone: the update used both ranks' gradients, averaged."""
    script = Path(__file__).with_name("rl_ddp_worker.py")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", str(script), str(tiny_model_dir), str(out)]
    env = {**os.environ, "AIMO3_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert not set(r0["problems"]) & set(r1["problems"])  # disjoint data
    assert r0["checksum"] == pytest.approx(r1["checksum"], abs=1e-6)  # one policy
    assert r0["checksum"] != pytest.approx(r0["initial_checksum"], abs=1e-6)  # it moved
    # one metrics row from rank 0 (rank 1's logger used to delete the file rank 0 wrote to)
    assert [r["step"] for r in read_metrics(out)] == [1]
    solo = _cfg(tiny_model_dir, tmp_path / "solo", num_steps=1, batch_size=1)
    model = RLMathTrainer(solo, ParityReward()).train([generate_synthetic(8, seed=3)[0]])
    w = _weights(model)
    assert sum(float(v.double().sum()) for v in w.values()) != pytest.approx(r0["checksum"],
                                                                            abs=1e-6)


@pytest.mark.vllm
def test_two_processes_with_vllm_rollouts_are_two_ranks(tmp_path):
    """Issue 22.4: under torchrun the in-process vLLM engine used to be built before the
    Accelerator; vLLM then made a one-process default group that accelerate reused, so each
    rank believed it was rank 0 of 1 (same problems, no gradient averaging, both writing
    rank0.json). Now the process group comes first and each rank runs its own engine in
    vLLM's torchrun mode (`external_launcher`)."""
    pytest.importorskip("vllm")
    from aimo3_recipe.testing import save_tiny_model

    # head size 64: one vLLM's CPU attention kernels take
    model_dir = save_tiny_model(tmp_path / "model", hidden_size=128, num_heads=2)
    script = Path(__file__).with_name("rl_ddp_worker.py")
    out = tmp_path / "ddp-vllm"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29519", str(script), str(model_dir), str(out), "vllm"]
    env = {**os.environ, "AIMO3_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert (r0["rank"], r1["rank"]) == (r0["env_rank"], r1["env_rank"]) == (0, 1)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["engines"] == r1["engines"] == ["VLLMEngine"]
    assert not set(r0["problems"]) & set(r1["problems"])  # disjoint data
    assert r0["checksum"] == pytest.approx(r1["checksum"], abs=1e-6)  # gradients averaged
    assert r0["checksum"] != pytest.approx(r0["initial_checksum"], abs=1e-6)  # it moved


def test_a_rank_without_signal_still_joins_every_step(tmp_path, tiny_model_dir):
    """Rank 1's groups are all dropped (no correctness variance): it must still take part in
    each backward pass and optimizer step, or the gradient all-reduce would hang."""
    script = Path(__file__).with_name("rl_ddp_worker.py")
    out = tmp_path / "ddp-silent"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29518", str(script), str(tiny_model_dir), str(out), "rank1_silent"]
    env = {**os.environ, "AIMO3_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["checksum"] == pytest.approx(r1["checksum"], abs=1e-6)
    assert r0["checksum"] != pytest.approx(r0["initial_checksum"], abs=1e-6)


def test_bad_rows_are_skipped_and_counted(capsys):
    """User rows go through the loaders' row_to_record: a boxed answer in a solution counts,
    rows without a problem or an answer are dropped with a count per reason."""
    from aimo3_recipe.training.rl_math import _as_records

    rows = [{"problem": "1 + 1?", "answer": "2"}, {"question": "x?", "solution": "\\boxed{3}"},
            {"answer": "4"}, {"problem": "no answer here"}]
    recs = _as_records(rows)
    assert [(r.problem, r.answer) for r in recs] == [("1 + 1?", "2"), ("x?", "3")]
    err = capsys.readouterr().err
    assert "skipped 2 rows" in err and "missing problem" in err and "no usable answer" in err


def test_demo_preset_rl_stage_resumes_from_its_own_checkpoint(tmp_path, tiny_model_dir):
    """configs/train_cpu_demo.yaml's RL stage checkpoints every rl.save_steps (SFT's
    save_steps used to leak into RL and exceeded the stage's length: a kill lost the stage).
    Killed after its first checkpoint, it resumes there. The preset's schedule, a tiny model
    and shorter rollouts."""
    import dataclasses

    from aimo3_recipe.config import load_config
    from aimo3_recipe.training.config import TrainConfig
    from aimo3_recipe.training.rl_math import rl_config

    preset = load_config(TrainConfig, Path(__file__).parents[1] / "configs" /
                         "train_cpu_demo.yaml")
    every = preset.rl.save_steps
    assert every < preset.rl.num_steps
    rl = dataclasses.replace(preset.rl, num_steps=every + 1, batch_size=1, group_size=2,
                             max_new_tokens=8, mode="cot", eval_samples=0, learning_rate=1e-2,
                             edge_filter_samples=0)  # the reward counts training calls only
    train_cfg = dataclasses.replace(preset, stage="rl", base_model=str(tiny_model_dir),
                                    output_dir=str(tmp_path), device="cpu", use_vllm=False,
                                    rl=rl)
    cfg = rl_config(train_cfg)
    assert cfg.rl.save_steps == every and cfg.model_name_or_path == str(tiny_model_dir)
    data = generate_synthetic(8, seed=4)
    with pytest.raises(KeyboardInterrupt):  # dies grading step every + 1
        RLMathTrainer(cfg, ParityReward(fail_on_call=every * 2 + 1)).train(data)
    run = Path(cfg.output_dir)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step-{every}"]
    RLMathTrainer(cfg, ParityReward()).train(data)
    assert [r["step"] for r in read_metrics(run)] == list(range(1, every + 2))
