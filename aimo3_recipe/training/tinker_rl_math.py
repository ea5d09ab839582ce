"""Stage 3 on Tinker: GRPO on answer correctness, `rl.loop.train` with the Tinker backend.

    python aimo3_recipe/training/tinker_rl_math.py model_name=Qwen/Qwen3-8B \\
        log_dir=./outputs/tinker-rl max_samples=1000 batch_size=8 group_size=16 \\
        save_samples=True verbose=True [wandb_project=...] [rl_steps=100] [rl_mode=cot]

The same algorithm, rewards, metric names and samples.jsonl fields as local RL
(training/rl_math.py); only the backend differs (rl/tinker_backend.py). Options are the
fields of `TinkerTrainConfig` (`--help` lists them): `batch_size` problems per step,
`rl_learning_rate`, `rl_steps`, `rl_mode`, `loss_fn`, `save_every`; `TINKER_API_KEY` comes
from the environment or `.env`. Rerunning with the same `log_dir` resumes from the newest
checkpoint with the same data order.
"""

from __future__ import annotations

from pathlib import Path

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.training.tinker_config import TinkerTrainConfig


def grpo_config(cfg: TinkerTrainConfig) -> GRPOConfig:
    """The algorithm's settings from the Tinker config (one field each)."""
    if cfg.rl_batch_size != TinkerTrainConfig.rl_batch_size:
        raise ConfigError(f"rl_batch_size={cfg.rl_batch_size}: on Tinker the RL batch is "
                          "batch_size= (problems per step); drop rl_batch_size")
    return GRPOConfig(
        mode=cfg.rl_mode, learning_rate=cfg.rl_learning_rate, batch_size=cfg.batch_size,
        mini_batch_size=cfg.mini_batch_size, ppo_epochs=cfg.ppo_epochs, num_steps=cfg.rl_steps,
        group_size=cfg.group_size, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
        correct_reward=cfg.correct_reward, incorrect_reward=cfg.incorrect_reward,
        format_reward=cfg.format_reward, eval_steps=cfg.eval_steps, eval_samples=cfg.eval_samples,
        save_samples=cfg.save_samples, sample_save_rate=cfg.sample_save_rate,
        samples_filename=cfg.samples_filename, save_steps=cfg.save_every, seed=cfg.seed,
        logging_steps=1, tis_cap=cfg.tis_cap, max_steps_off_policy=cfg.max_steps_off_policy,
        dynamic_sampling=cfg.dynamic_sampling, max_sampling_rounds=cfg.max_sampling_rounds,
        drop_solved_problems=cfg.drop_solved_problems)


class _VerboseLogger:
    """The run's logger, printing the loss metrics of every step when `verbose=True`."""

    def __init__(self, logger, verbose: bool) -> None:
        self.logger, self.verbose = logger, verbose

    def __getattr__(self, name: str):  # log_samples, close, ...: the logger's own
        return getattr(self.logger, name)

    def log(self, metrics, step: int) -> None:
        self.logger.log(metrics, step)
        if self.verbose:
            keys = ("reward/mean", "samples/batch_accuracy", "train/loss", "train/ratio_mean",
                    "train/clip_frac_low", "train/clip_frac_high", "train/sampler_logprob_gap",
                    "train/grad_norm", "eval/accuracy", "time/step")
            shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
            print(f"[tinker rl] step {step} {shown}", flush=True)


def main(cfg: TinkerTrainConfig) -> Path:
    """Run RL on Tinker; returns the exported model (or adapter) folder, or log_dir."""
    from aimo3_recipe.models import load_tokenizer
    from aimo3_recipe.rl.loop import train
    from aimo3_recipe.rl.rewards import MathRewardFunction
    from aimo3_recipe.training.rl_math import _load, held_out
    from aimo3_recipe.training.tinker_session import export_weights, make_logger, open_backend

    grpo = grpo_config(cfg)
    if cfg.loss_fn not in ("ppo", "importance_sampling"):
        raise ConfigError(f"loss_fn must be ppo or importance_sampling; got {cfg.loss_fn!r}")
    problems = _load(cfg.dataset, cfg.max_samples, cfg.seed)
    if not problems:
        raise ConfigError("Tinker RL has no training problems with answers; check dataset=")
    evals = held_out(problems, cfg.eval_samples, cfg.seed) if cfg.eval_samples else []
    tokenizer = load_tokenizer(cfg.model_name)
    service, backend, start = open_backend(cfg, tokenizer, learning_rate=grpo.learning_rate,
                                           kind="rl", logs=("metrics.jsonl", cfg.samples_filename))
    reward_fn = MathRewardFunction(correct_reward=cfg.correct_reward,
                                   incorrect_reward=cfg.incorrect_reward,
                                   format_reward=cfg.format_reward)
    logger = make_logger(cfg, start > 0, {"rl": grpo, "num_problems": len(problems),
                                          "num_eval_problems": len(evals)})
    run = Path(cfg.log_dir)
    try:
        if start < grpo.num_steps:
            train(grpo, backend, problems, reward_fn, _VerboseLogger(logger, cfg.verbose), run,
                  eval_problems=evals, start_step=start)
    finally:
        logger.close()
    return export_weights(service, backend, cfg) or run if cfg.export else run


if __name__ == "__main__":
    from aimo3_recipe.training.tinker_session import run_cli

    run_cli(main, "rl")
