"""Entry point: `python -m aimo3_recipe.training.train --stage cot|tir|rl|full [flags]`.

Only assembles a TrainConfig (defaults <- --config YAML <- flags) and calls the stage's
`main(config)`; `full` chains cot -> tir -> rl, each stage starting from the previous output.
Settings are paths in the config tree (training/config.py): `--sft.learning-rate`,
`--rl.group-size`, `--rl.loss.tis-cap`; `--help` lists them by section. The SFT stages read
`sft`, the RL stage `rl`; an RL-only flag (`--rl.*`, `--eval-steps`, `--save-samples`...) given
with `--stage cot|tir` is an error rather than silently ignored, and so is an old flat flag
(`--group-size`: it names `--rl.group-size`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Collection
from pathlib import Path

from aimo3_recipe.config import add_dataclass_args, config_from_args, given_fields
from aimo3_recipe.exceptions import Aimo3Error, ConfigError
from aimo3_recipe.training.config import STAGES, TrainConfig, check_stage_fields

# stage -> module whose `main(config) -> Path` runs it and returns the trained model folder
STAGE_MODULES = {
    "cot": "aimo3_recipe.training.sft_cot",
    "tir": "aimo3_recipe.training.sft_tir",
    "rl": "aimo3_recipe.training.rl_math",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aimo3_recipe.training.train",
        usage="%(prog)s [--config X.yaml] [--stage cot|tir|rl|full] [--FIELD V] "
              "[--SECTION.FIELD V ...]",
        description="Train a maths model: SFT-CoT -> SFT-TIR -> RL (GRPO). Settings are "
                    "grouped by section: sft.* (the SFT stages), rl.* (RL), rl.loss.*, "
                    "pipeline.* (--stage full's comparison).",
        allow_abbrev=False,  # --rl.loss.eps must not silently mean --rl.loss.epsilon-low
    )
    parser.add_argument("--config", default=None, help="YAML file of saved overrides")
    add_dataclass_args(parser, TrainConfig)
    return parser


def run_stage(stage: str, config: TrainConfig) -> Path:
    """Run one stage; its outputs go to <output_dir>/<stage>."""
    try:
        module = importlib.import_module(STAGE_MODULES[stage])
    except ModuleNotFoundError as e:
        if e.name != STAGE_MODULES[stage]:
            raise
        raise ConfigError(f"--stage {stage} is not available in this version of aimo3-recipe") from e
    return module.main(dataclasses.replace(config, stage=stage))


def main(config: TrainConfig, given: Collection[str] | None = None) -> Path:
    """Run `config.stage`. `given`: the fields the user set (None: those off their default)."""
    if config.stage not in STAGES:
        raise ConfigError(f"--stage must be one of {STAGES}; got {config.stage!r}")
    check_stage_fields(config, given)
    if config.stage != "full":
        return run_stage(config.stage, config)
    from aimo3_recipe.training.pipeline import run_full

    return run_full(config, run_stage)


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(TrainConfig, args, args.config)
        out = main(config, given_fields(TrainConfig, args, args.config))
    except Aimo3Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
