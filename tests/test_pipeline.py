"""`--stage full` on a tiny random model through the real CLI: every stage's outputs, the
record that lets a rerun skip finished stages, a kill during RL resumed from its checkpoint,
and the report's table and plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["--max-samples", "12", "--sft.num-epochs", "1", "--sft.max-seq-length", "256",
        "--sft.batch-size", "4", "--sft.gradient-accumulation-steps", "1", "--use-lora", "false",
        "--sft.learning-rate", "1e-3", "--rl.num-steps", "10", "--rl.batch-size", "2",
        "--rl.group-size", "2", "--rl.max-new-tokens", "12", "--rl.learning-rate", "1e-3",
        "--rl.temperature", "1.0", "--eval-samples", "2", "--sft.save-steps", "1",
        "--rl.save-steps", "1", "--pipeline.eval-problems", "6", "--pipeline.story-problems", "2",
        "--pipeline.sc", "2",
        "--pipeline.eval-tokens", "16", "--device", "cpu", "--use-vllm", "false",
        "--dataset", "synthetic"]


def _cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "aimo3_recipe.training.train", "--stage", "full",
            "--base-model", str(model), "--output-dir", str(out), *ARGS]


ENV = {**os.environ, "AIMO3_PROGRESS": "0"}


@pytest.mark.slow
def test_full_pipeline_kill_in_rl_then_rerun(tmp_path, tiny_model_dir):
    out = tmp_path / "full"
    proc = subprocess.Popen(_cmd(tiny_model_dir, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # any RL checkpoint (older ones are rotated away; a step without signal takes ~0.1 s)
    while not list((out / "rl" / "checkpoints").glob("step-*/state.json")):
        assert proc.poll() is None, "the pipeline ended before RL wrote a checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    record = json.loads((out / "pipeline.json").read_text())
    assert set(record["stages"]) == {"cot", "tir"}  # RL was not finished
    res = subprocess.run(_cmd(tiny_model_dir, out), env=ENV, capture_output=True, text=True,
                         check=False, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cot: finished in an earlier run" in res.stderr
    assert "tir: finished in an earlier run" in res.stderr
    assert "RL resumes from" in res.stderr
    record = json.loads((out / "pipeline.json").read_text())
    assert [s for s in ("cot", "tir", "rl") if record["stages"][s]["status"] == "done"] == \
        ["cot", "tir", "rl"]
    for stage in ("cot", "tir", "rl"):
        assert (out / stage / "model" / "config.json").is_file()
        assert (out / stage / "metrics.jsonl").is_file()
    steps = [json.loads(line)["step"] for line in (out / "rl" / "metrics.jsonl").open()]
    assert steps == sorted(set(steps)) and steps[-1] == 10  # resumed, nothing logged twice
    summary = json.loads((out / "pipeline_results.json").read_text())
    assert set(summary["models"]) == {"base", "cot", "tir", "rl"}
    for row in summary["models"].values():
        assert row["n"] == 6 + 2 * 2 and 0 <= row["greedy"] <= 1 and len(row["greedy_ci"]) == 2
        assert "sc@2" in row
    assert summary["models"]["tir"]["mode"] == "tir" and summary["models"]["cot"]["mode"] == "cot"
    report = (out / "report.md").read_text()
    assert "after SFT-TIR" in report and "SC@2" in report
    # paired gains: every stage against its start and RL against base, per part and overall
    gains = {(g["stage"], g["against"], g["part"], g["metric"]): g for g in summary["gains"]}
    for pair in (("cot", "base"), ("tir", "cot"), ("rl", "tir"), ("rl", "base")):
        assert gains[(*pair, "all", "greedy")]["n"] == 10
        assert gains[(*pair, "stories (locked)", "sc")]["n"] == 2
    assert "| after RL | after SFT-TIR | stories (locked) | 2 |" in report
    for plot in ("sft_loss", "rl", "accuracy"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
    # a third run finds everything done: no training, only the (resumed) comparison
    t0 = time.time()
    again = subprocess.run(_cmd(tiny_model_dir, out), env=ENV, capture_output=True, text=True,
                           check=False, timeout=600)
    assert again.returncode == 0 and "rl: finished in an earlier run" in again.stderr
    assert time.time() - t0 < 120


def test_stage_overrides_shorten_cot_and_put_rl_on_lora():
    from aimo3_recipe.training.config import TrainConfig
    from aimo3_recipe.training.pipeline import heldout_bench, stage_overrides

    from aimo3_recipe.training.config import PipelineConfig

    cfg = TrainConfig(stage="full", use_lora=False, max_samples=320,
                      pipeline=PipelineConfig(cot_max_samples=64, rl_lora_rank=16,
                                              eval_problems=5, story_problems=3))
    assert stage_overrides(cfg, "cot") == {"sft.max_samples": 64}
    assert stage_overrides(cfg, "tir") == {}
    assert stage_overrides(cfg, "rl") == {"use_lora": True, "lora_rank": 16, "lora_alpha": 32}
    assert stage_overrides(TrainConfig(), "cot") == stage_overrides(TrainConfig(), "rl") == {}
    rows, parts = heldout_bench(cfg)
    assert len(rows) == 5 + 2 * 3 and len({r["id"] for r in rows}) == len(rows)
    assert sorted(set(parts.values())) == ["skills", "stories (locked)", "stories (tuning)"]
    assert sum(p == "stories (locked)" for p in parts.values()) == 3
