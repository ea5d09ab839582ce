from pathlib import Path

import pytest

from aimo3_recipe.config import from_dict, load_config
from aimo3_recipe.evaluation.config import EvalConfig
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.aimo.config import SolverConfig
from aimo3_recipe.training.config import TrainConfig
from aimo3_recipe.training.tinker_config import TinkerTrainConfig
from aimo3_recipe.training.train import build_parser, cli

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def config_class_for(path: Path) -> type:
    """Which dataclass a file in `configs/` overrides, by its name: train_*, eval*, tinker_*,
    kaggle_* (the AIMO3 solver)."""
    for prefix, cls in (("tinker", TinkerTrainConfig), ("eval", EvalConfig),
                        ("train", TrainConfig), ("kaggle", SolverConfig)):
        if path.stem.startswith(prefix):
            return cls
    raise AssertionError(f"{path}: config files are named train_*, eval*, tinker_* or "
                         "kaggle_*.yaml")


def test_recipe_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"train_qwen_14b.yaml", "tinker_train.yaml", "eval.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads(path):
    cls = config_class_for(path)
    cfg = load_config(cls, path)
    assert isinstance(cfg, cls)


def test_overrides_win_and_types_are_coerced(tmp_path):
    y = tmp_path / "train_x.yaml"
    y.write_text("stage: tir\nsft:\n  learning_rate: 1.0e-4\nuse_lora: false\n")
    cfg = load_config(TrainConfig, y, {"max_samples": "12", "sft.learning_rate": None,
                                       "rl.group_size": "4"})
    assert (cfg.stage, cfg.sft.learning_rate, cfg.use_lora) == ("tir", 1e-4, False)
    assert cfg.sft.max_samples == 12 and cfg.rl.max_samples == 12 and cfg.rl.group_size == 4
    assert cfg.lora_rank == 64 and cfg.sft.num_epochs == 3 and cfg.sft.max_seq_length == 4096
    assert cfg.rl.learning_rate == 1e-6  # SFT's learning rate is not RL's


def test_unknown_key_and_bad_type_are_errors():
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        from_dict(TrainConfig, {"learning_rat": 1})
    with pytest.raises(ConfigError, match="unknown TrainConfig field 'rl.group_sise'"):
        from_dict(TrainConfig, {"rl": {"group_sise": 1}})
    with pytest.raises(ConfigError, match="SFTConfig.batch_size"):
        from_dict(TrainConfig, {"sft": {"batch_size": "four"}})
    with pytest.raises(ConfigError, match="rl.loss is a section"):
        from_dict(TrainConfig, {"rl": {"loss": 0.2}})


def test_cli_flags_map_to_fields():
    args = build_parser().parse_args(["--stage", "cot", "--max-samples", "5", "--use-lora",
                                      "false", "--sft.learning-rate", "1e-4"])
    assert args.stage == "cot" and args.max_samples == "5" and args.use_lora == "false"
    assert vars(args)["sft.learning_rate"] == "1e-4"


def test_bad_stage_is_one_line_error(capsys):
    assert cli(["--stage", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--stage must be one of" in err and "Traceback" not in err
