"""Stage 3 on Tinker: GRPO on answer correctness, `rl.loop.train` with the Tinker backend.

    python aimo3_recipe/training/tinker_rl_math.py model_name=Qwen/Qwen3-8B \\
        log_dir=./outputs/tinker-rl max_samples=1000 batch_size=8 group_size=16 \\
        save_samples=True verbose=True [wandb_project=...] [rl.num_steps=100] [rl.mode=cot]

The same algorithm, rewards, metric names and samples.jsonl fields as local RL
(training/rl_math.py), from the same `rl` section (rl/config.py: `rl.batch_size` problems
per step, `rl.learning_rate`, `rl.num_steps`, `rl.save_steps`, `rl.loss.*`); only the
backend differs (rl/tinker_backend.py; docs/rl.md says what differs in the loss). `--help`
lists every option by section; `TINKER_API_KEY` comes from the environment or `.env`.
Rerunning with the same `log_dir` resumes from the newest checkpoint with the same data order.
"""

from __future__ import annotations

from pathlib import Path

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.training.tinker_config import TinkerTrainConfig

# rl.* settings of the local backend that the service has no use for, and why
LOCAL_ONLY = {
    "vllm": "rollouts are sampled by the service, not a local vLLM engine",
    "gradient_checkpointing": "the service manages its own memory",
    "logprob_chunk_tokens": "the service computes the log-probs",
    "entropy_sample_tokens": "the service returns no entropy",
}


def check_rl(cfg: TinkerTrainConfig) -> None:
    """Refuse an `rl.*` setting Tinker RL would ignore (set away from its default), and a loss
    the service cannot compute (`check_loss`), before anything is spent."""
    from aimo3_recipe.rl.tinker_backend import check_loss

    default = TinkerTrainConfig().rl
    for name, why in LOCAL_ONLY.items():
        if getattr(cfg.rl, name) != getattr(default, name):
            raise ConfigError(f"rl.{name}={getattr(cfg.rl, name)!r}: Tinker RL cannot honour it "
                              f"({why}); drop it, or train locally (train.py --stage rl)")
    check_loss(cfg.rl.loss)


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
    from aimo3_recipe.training.sft_data import default_dataset
    from aimo3_recipe.training.tinker_session import export_weights, make_logger, open_backend

    grpo = cfg.rl
    check_rl(cfg)
    name = grpo.dataset or default_dataset(cfg.model_name, "rl")
    problems = _load(name, grpo.max_samples, grpo.seed)
    if not problems:
        raise ConfigError(f"Tinker RL has no training problems with answers in {name}; check "
                          "rl.dataset=")
    evals = held_out(problems, grpo.eval_samples, grpo.seed) if grpo.eval_samples else []
    tokenizer = load_tokenizer(cfg.model_name)
    service, backend, start = open_backend(cfg, tokenizer, learning_rate=grpo.learning_rate,
                                           max_grad_norm=grpo.max_grad_norm, kind="rl",
                                           seed=grpo.seed,
                                           logs=("metrics.jsonl", grpo.samples_filename))
    reward_fn = MathRewardFunction(correct_reward=grpo.correct_reward,
                                   incorrect_reward=grpo.incorrect_reward,
                                   format_reward=grpo.format_reward)
    logger = make_logger(cfg, start > 0, {"num_problems": len(problems),
                                          "num_eval_problems": len(evals)})
    run = Path(cfg.log_dir)
    if grpo.edge_filter_samples > 0:  # the same choice as locally, by the service's sampler
        from aimo3_recipe.rl.edge_filter import edge_problems

        problems = edge_problems(grpo, backend, problems, reward_fn, run)
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
