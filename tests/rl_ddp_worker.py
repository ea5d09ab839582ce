"""Run by tests/test_rl_stage.py under torchrun (2 CPU processes): one RL step of the local
backend, then each rank writes its problems and a checksum of its weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from aimo3_recipe.data.synthetic import generate_synthetic
from aimo3_recipe.rl.rewards import RewardResult
from aimo3_recipe.training.rl_math import RLMathConfig, RLMathTrainer


class ParityReward:
    """Even-length text is 'correct'; `silent`: always wrong (this rank's groups all drop);
    `by_call`: every other rollout is 'correct' (a signal in every group whatever the texts:
    vLLM's CPU sampling cannot be seeded per request)."""

    def __init__(self, silent: bool = False, by_call: bool = False):
        self.silent, self.by_call, self.calls = silent, by_call, 0

    def __call__(self, text, ground_truth, truncated=False, problem=None):
        self.calls += 1
        ok = (self.calls if self.by_call else len(text)) % 2 == 0 and not self.silent
        return RewardResult(1.0 if ok else -0.5, ok, False, None, "ok", truncated)


def checksum(model) -> float:
    return sum(float(p.detach().double().sum()) for p in model.state_dict().values())


def main(model_dir: str, out: str, mode: str = "both") -> None:
    """mode "both": every rank has a learning signal; "rank1_silent": rank 1 has none (its
    groups are all dropped), so it must still join every backward pass and step; "vllm":
    as "both" with rollouts on an in-process vLLM engine per rank."""
    import os

    rank = int(os.environ.get("RANK", "0"))
    from aimo3_recipe.rl import loop

    seen: list[str] = []
    original = loop.batch_records

    def recording(*args, **kwargs):
        records = original(*args, **kwargs)
        seen.extend(r.problem for r in records)
        return records

    loop.batch_records = recording
    from aimo3_recipe.training import rl_math

    engines: list[str] = []
    make_engine = rl_math._rollout_engine

    def recording_engine(*args, **kwargs):
        engine = make_engine(*args, **kwargs)
        engines.append(type(engine).__name__)
        return engine

    rl_math._rollout_engine = recording_engine
    cfg = RLMathConfig(model_name_or_path=model_dir, output_dir=out, mode="cot", group_size=4,
                       batch_size=1, num_steps=1, max_new_tokens=12, learning_rate=1e-2,
                       eval_samples=0, device_map="cpu", use_lora=False, temperature=1.0,
                       use_vllm=mode == "vllm", save_samples=True, sample_save_rate=1.0)
    trainer = RLMathTrainer(cfg, ParityReward(silent=mode == "rank1_silent" and rank == 1,
                                              by_call=mode == "vllm"))
    from aimo3_recipe.models import load_model

    initial = checksum(load_model(model_dir, device="cpu"))
    trainer.train([generate_synthetic(8, seed=3)[0], generate_synthetic(8, seed=3)[1]])
    # every rank's policy after the step (rank 0 also saved it)
    policy = trainer.backend.policy
    rank = trainer.backend.rank
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world_size": trainer.backend.world_size, "problems": seen,
        "env_rank": int(os.environ.get("RANK", "0")),
        "engines": engines,
        "checksum": checksum(policy), "initial_checksum": initial}))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:])
