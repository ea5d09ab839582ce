"""Stage 2, SFT on tool-integrated reasoning: `python -m aimo3_recipe.training.train --stage tir`.

Trains on solutions that write ```python blocks and read their ```output; the output block's
contents are masked (the executor writes them at inference). Starts from the CoT stage's
model in the same --output-dir when one exists and --base-model is left at its default;
`--stage full` passes the CoT model explicitly.
"""

from __future__ import annotations

from pathlib import Path

from aimo3_recipe.training.checkpoint import stage_dirs
from aimo3_recipe.training.config import TrainConfig
from aimo3_recipe.training.sft import run_sft
from aimo3_recipe.utils.notice import notice


def starting_model(config: TrainConfig) -> str:
    """--base-model if given; else the CoT stage's model in --output-dir when it exists."""
    default = TrainConfig.base_model
    cot_model = stage_dirs(config.output_dir, "cot")["model"]
    if config.base_model != default:
        return config.base_model
    if (cot_model / "config.json").is_file():
        notice(f"TIR starts from the CoT model {cot_model} (pass --base-model to change)")
        return str(cot_model)
    notice(f"no CoT model at {cot_model}; TIR starts from --base-model {default!r}")
    return default


def main(config: TrainConfig) -> Path:
    """Run the TIR stage; returns the trained model folder (`<output_dir>/tir/model`)."""
    return run_sft(config, mode="tir", base_model=starting_model(config))
