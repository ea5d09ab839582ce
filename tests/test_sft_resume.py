"""Kill an SFT run after step k, resume it from its last checkpoint, and check the loss curve
after the kill is the uninterrupted run's (data order, optimizer, scheduler and RNG restored)."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from aimo3_recipe.training.config import SFTConfig, TrainConfig
from aimo3_recipe.training.sft import run_sft
from aimo3_recipe.utils.ml_log import read_metrics


class StepRecorder(TrainerCallback):
    """Remember the steps this run trained."""

    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


class Killed(Exception):
    pass


class KillAfterStep(TrainerCallback):
    """Raise at the end of step k, before it is logged or saved: as if the process died."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tiny_model_dir, out, use_lora: bool) -> TrainConfig:
    # 24 examples, 2 epochs, shuffled: the data order, LoRA dropout and the LR schedule all
    # matter, so any state not restored changes the losses after the resume
    return TrainConfig(stage="cot", base_model=str(tiny_model_dir), output_dir=str(out),
                       sft=SFTConfig(max_samples=24, num_epochs=2, batch_size=4,
                                     gradient_accumulation_steps=1, logging_steps=1,
                                     save_steps=2, learning_rate=1e-2, max_seq_length=256,
                                     dataset="synthetic"),
                       use_lora=use_lora, lora_rank=4, lora_alpha=8)


@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "full"])
def test_resume_after_kill_continues_like_an_uninterrupted_run(tiny_model_dir, tmp_path,
                                                                use_lora):
    run_sft(_config(tiny_model_dir, tmp_path / "a", use_lora), "cot")
    reference = {r["step"]: r["train/loss"] for r in read_metrics(tmp_path / "a" / "cot")
                 if "train/loss" in r}

    config = _config(tiny_model_dir, tmp_path / "b", use_lora)
    with pytest.raises(Killed):
        run_sft(config, "cot", callbacks=[KillAfterStep(5)])
    assert sorted(p.name for p in (tmp_path / "b" / "cot" / "checkpoints").iterdir()
                  if p.name.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-4"]
    recorder = StepRecorder()
    run_sft(config, "cot", callbacks=[recorder])  # resumes from checkpoint-4: step 5 is redone
    assert recorder.steps[0] == 5

    steps = [(r["step"], r["train/loss"]) for r in read_metrics(tmp_path / "b" / "cot")
             if "train/loss" in r]
    assert [s for s, _ in steps] == list(range(1, max(reference) + 1))  # 1-4 once, then 5..
    assert max(reference) >= 10
    for step, loss in steps:
        assert loss == pytest.approx(reference[step], abs=1e-5), step
    # the losses move, so matching them says something
    assert len({round(v, 4) for v in reference.values()}) > 5
