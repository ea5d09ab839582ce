"""A transformers TrainerCallback that sends the trainer's logs to our MetricsLogger.

The trainer logs flat keys (`loss`, `grad_norm`, `learning_rate`...); we write them with
namespaced keys (`train/loss`, `train/grad_norm`, `train/lr`) plus `train/tokens_per_s`:
real (non-padding) tokens of this process per second, counted by the collator, so that
packed and padded runs compare fairly. Only the main process writes.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

# trainer log key -> our metric name; other numeric keys become "train/<key>"
KEY_NAMES = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/lr",
    "epoch": "train/epoch",
    "mean_token_accuracy": "train/token_accuracy",
    "entropy": "train/entropy",
    "train_runtime": "time/train_runtime",
    "train_loss": "train/mean_loss",
}
# TRL's num_tokens counts one row per packed batch, not real tokens: train/tokens replaces it
_DROPPED = ("total_flos", "train_samples_per_second", "train_steps_per_second", "num_tokens")


def rename_logs(logs: dict[str, Any]) -> dict[str, float]:
    """Trainer log dict -> our namespaced metrics (numbers only)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if key in _DROPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[KEY_NAMES.get(key, key if "/" in key else f"train/{key}")] = value
    return out


class MetricsCallback(TrainerCallback):
    """Log every trainer log event to `logger` (a MetricsLogger) with tokens/s.

    `token_counter` is any object with a `num_real_tokens` attribute (our SFTCollator).
    """

    def __init__(self, logger, token_counter=None):
        self.logger = logger
        self.token_counter = token_counter
        self._last_time: float | None = None
        self._last_tokens = 0

    def _tokens(self) -> int:
        return int(getattr(self.token_counter, "num_real_tokens", 0) or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = rename_logs(logs)
        now, tokens = time.perf_counter(), self._tokens()
        if "train/loss" in metrics:
            # The first training log only sets the baseline: the data loader reads one batch
            # ahead, so counts are exact as differences between logs.
            if self._last_time is not None and tokens > self._last_tokens:
                elapsed = max(now - self._last_time, 1e-9)
                metrics["train/tokens_per_s"] = (tokens - self._last_tokens) / elapsed
            if tokens:
                metrics["train/tokens"] = tokens
            self._last_time, self._last_tokens = now, tokens
        self.logger.log(metrics, step=state.global_step)
