"""Stage 1, SFT on chain-of-thought solutions: `python -m aimo3_recipe.training.train --stage cot`.

Trains on each record's worked solution, loss on the assistant's tokens only (`sft.py`).
"""

from __future__ import annotations

from pathlib import Path

from aimo3_recipe.training.config import TrainConfig
from aimo3_recipe.training.sft import run_sft


def main(config: TrainConfig) -> Path:
    """Run the CoT stage; returns the trained model folder (`<output_dir>/cot/model`)."""
    return run_sft(config, mode="cot")
