"""One configuration tree (issue 21): every setting of every entry point is reachable from its
command line (local flags, Tinker's chz `key=value`) and the Python API; each is defined in
one class; the seed's flat spellings still work as aliases; old flat spellings are errors
naming the new path; sections do not leak into each other (SFT's save_steps is not RL's)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest

from aimo3_recipe.config import (
    chz_config,
    config_from_args,
    dashed,
    field_types,
    get_path,
    is_section,
    leaf_paths,
    load_config,
    section_paths,
)
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig, LossConfig
from aimo3_recipe.training.config import TrainConfig
from aimo3_recipe.training.rl_math import RLMathConfig, rl_config
from aimo3_recipe.training.tinker_config import SECTION_DEFAULTS, TinkerTrainConfig
from aimo3_recipe.training.train import build_parser

REPO = Path(__file__).resolve().parents[1]
CHOICES = {"stage": ["cot", "tir", "rl", "full"], "rl.mode": ["tir", "cot"],
           "rl.loss.ratio_against": ["trainer", "sampler"], "device": ["auto", "cpu"],
           "dtype": ["auto", "float32"], "report_to": ["none", "tensorboard"],
           "rl.vllm.quantization": [None, "fp8"], "rl.vllm.kv_cache_dtype": ["auto", "fp8"]}
# settings valid only together with another (the other is set too)
COMPANIONS = {"rl.drop_solved_problems": {"rl.dynamic_sampling": True}}


def other_value(path: str, tp, default):
    """A valid value for the setting at `path` that is not its default."""
    if path in CHOICES:
        return next(c for c in CHOICES[path] if c != default)
    bases = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if bool in bases:
        return not default if isinstance(default, bool) else False
    if int in bases:
        return (default or 0) + 2
    if float in bases:
        return round((default or 0.0) + 0.25, 6)
    return f"{default or 'x'}.other"


def _cases(cls):
    defaults = cls()
    return [(p, tp, get_path(defaults, p)) for p, tp in leaf_paths(cls).items()]


@pytest.mark.parametrize(("path", "tp", "default"), _cases(TrainConfig),
                         ids=[c[0] for c in _cases(TrainConfig)])
def test_every_setting_is_settable_by_its_flag(path, tp, default):
    value = other_value(path, tp, default)
    extra = COMPANIONS.get(path, {})
    argv = [dashed(path), str(value)] + [x for p, v in extra.items() for x in (dashed(p), str(v))]
    cfg = config_from_args(TrainConfig, build_parser().parse_args(argv))
    assert get_path(cfg, path) == value
    others = [p for p in leaf_paths(TrainConfig) if p != path and p not in extra]
    assert all(get_path(cfg, p) == get_path(TrainConfig(), p) for p in others)


@pytest.mark.parametrize(("path", "tp", "default"), _cases(TinkerTrainConfig),
                         ids=[c[0] for c in _cases(TinkerTrainConfig)])
def test_every_setting_is_settable_through_chz(path, tp, default):
    pytest.importorskip("chz")
    value = other_value(path, tp, default)
    extra = [f"{p}={v}" for p, v in COMPANIONS.get(path, {}).items()]
    cfg = chz_config(TinkerTrainConfig, [f"{path}={value}", *extra], SECTION_DEFAULTS)
    assert get_path(cfg, path) == value
    # Tinker's own section defaults survive a setting of the same section
    for default_path, default_value in SECTION_DEFAULTS.items():
        if default_path != path:
            assert get_path(cfg, default_path) == default_value


def test_the_loop_knobs_the_issue_names_are_reachable_everywhere():
    knobs = ["rl.loss.epsilon_low", "rl.loss.epsilon_high", "rl.max_tool_calls",
             "rl.scale_by_std", "rl.max_grad_norm", "rl.loss.tis_cap"]
    for cls in (TrainConfig, TinkerTrainConfig, RLMathConfig):
        assert set(knobs) <= set(leaf_paths(cls)), cls
    # every field of GRPOConfig (the loop's) is under rl. in all three entry points
    loop = {"rl." + p for p in leaf_paths(GRPOConfig)}
    for cls in (TrainConfig, TinkerTrainConfig, RLMathConfig):
        assert loop <= set(leaf_paths(cls))


def test_rlmathconfig_takes_the_spec_fields_as_aliases():
    """SPEC.md's `RLMathConfig(...)` keywords land on the tree."""
    cfg = RLMathConfig(model_name_or_path="m", output_dir="o", batch_size=3, mini_batch_size=6,
                       gradient_accumulation_steps=2, ppo_epochs=2, max_new_tokens=64,
                       logging_steps=5, save_steps=7, report_to="tensorboard", use_lora=False,
                       device_map="cpu", torch_dtype="float32", save_samples=True,
                       sample_save_rate=0.5, samples_filename="s.jsonl", correct_reward=2.0,
                       incorrect_reward=-1.0, format_reward=0.0, epsilon_high=0.3, tis_cap=2.0)
    rl = cfg.rl
    assert (cfg.model_name_or_path, cfg.output_dir, cfg.report_to, cfg.use_lora, cfg.device,
            cfg.dtype) == ("m", "o", "tensorboard", False, "cpu", "float32")
    assert (rl.batch_size, rl.mini_batch_size, rl.gradient_accumulation_steps, rl.ppo_epochs,
            rl.max_new_tokens, rl.logging_steps, rl.save_steps) == (3, 6, 2, 2, 64, 5, 7)
    assert (rl.save_samples, rl.sample_save_rate, rl.samples_filename) == (True, 0.5, "s.jsonl")
    assert (rl.correct_reward, rl.incorrect_reward, rl.format_reward) == (2.0, -1.0, 0.0)
    assert (rl.loss.epsilon_high, rl.loss.tis_cap) == (0.3, 2.0)
    with pytest.raises(TypeError, match="unexpected keyword 'group_sise'"):
        RLMathConfig(group_sise=4)
    # nested and flat together: the flat one edits the given section
    cfg = RLMathConfig(rl=GRPOConfig(group_size=4), batch_size=2)
    assert (cfg.rl.group_size, cfg.rl.batch_size) == (4, 2)


def test_the_seeds_train_flags_are_aliases():
    args = build_parser().parse_args([
        "--stage", "rl", "--base-model", "b", "--output-dir", "o", "--max-samples", "5",
        "--save-samples", "--sample-save-rate", "0.5", "--samples-filename", "s.jsonl",
        "--eval-steps", "3", "--eval-samples", "7"])
    cfg = config_from_args(TrainConfig, args)
    assert (cfg.stage, cfg.base_model, cfg.output_dir) == ("rl", "b", "o")
    assert cfg.sft.max_samples == 5 and cfg.rl.max_samples == 5
    assert (cfg.rl.save_samples, cfg.rl.sample_save_rate, cfg.rl.samples_filename) == \
        (True, 0.5, "s.jsonl")
    assert (cfg.rl.eval_steps, cfg.rl.eval_samples) == (3, 7)
    # an explicit path wins over its alias, in either order
    for argv in (["--max-samples", "5", "--rl.max-samples", "9"],
                 ["--rl.max-samples", "9", "--max-samples", "5"]):
        cfg = config_from_args(TrainConfig, build_parser().parse_args(argv))
        assert (cfg.sft.max_samples, cfg.rl.max_samples) == (5, 9)


def test_the_seeds_tinker_options_are_aliases():
    pytest.importorskip("chz")
    cfg = chz_config(TinkerTrainConfig, [
        "model_name=M", "stage=tir", "log_dir=L", "max_samples=10", "batch_size=8",
        "group_size=4", "verbose=True", "wandb_project=P", "wandb_name=N", "save_samples=True"],
        SECTION_DEFAULTS)
    assert (cfg.model_name, cfg.stage, cfg.log_dir, cfg.verbose, cfg.wandb_project,
            cfg.wandb_name) == ("M", "tir", "L", True, "P", "N")
    assert cfg.sft.max_samples == 10 and cfg.rl.max_samples == 10
    assert cfg.sft.batch_size == 8 and cfg.rl.batch_size == 8 and cfg.rl.group_size == 4
    assert cfg.rl.save_samples is True


@pytest.mark.parametrize(("argv", "new"), [
    (["--group-size", "4"], "--rl.group-size"),
    (["--learning-rate", "1e-4"], "--sft.learning-rate or --rl.learning-rate"),
    (["--rl-steps", "3"], "--rl.num-steps"),
    (["--tis-cap", "2"], "--rl.loss.tis-cap"),
    (["--pipeline-sc", "2"], "--pipeline.sc"),
    (["--save-steps", "5"], "--sft.save-steps or --rl.save-steps"),
    (["--max-steps", "5"], "--sft.max-steps or --rl.num-steps"),
])
def test_old_flat_flags_are_errors_naming_the_new_flag(argv, new):
    args = build_parser().parse_args(argv)
    with pytest.raises(ConfigError, match="moved: now " + new.replace(".", r"\.")):
        config_from_args(TrainConfig, args)


def test_old_flat_yaml_is_an_error_naming_the_new_key(tmp_path):
    old = tmp_path / "train_old.yaml"
    old.write_text("stage: rl\nrl_steps: 12\n")
    with pytest.raises(ConfigError, match=r"train_old.yaml: .*'rl_steps' moved: now rl\.num_steps"):
        load_config(TrainConfig, old)
    old.write_text("group_size: 8\n")
    with pytest.raises(ConfigError, match=r"'group_size' moved: now rl\.group_size"):
        load_config(TrainConfig, old)
    with pytest.raises(ConfigError, match=r"'learning_rate' moved"):
        TrainConfig(learning_rate=1e-4)


@pytest.mark.parametrize(("arg", "new"), [("rl_steps=3", "rl.num_steps"),
                                          ("save_every=5", "sft.save_steps or rl.save_steps"),
                                          ("loss_fn=ppo", "rl.loss.clip"),
                                          ("learning_rate=1e-5", "sft.learning_rate")])
def test_old_tinker_options_are_errors_naming_the_new_one(arg, new):
    with pytest.raises(ConfigError, match="moved: now " + new.replace(".", r"\.")):
        chz_config(TinkerTrainConfig, [arg], SECTION_DEFAULTS)


def test_sft_settings_do_not_leak_into_rl():
    """The demo preset's RL stage checkpoints on its own schedule (rl.save_steps), not SFT's
    save_steps (which was larger than its number of steps: a kill lost the whole stage)."""
    cfg = load_config(TrainConfig, REPO / "configs" / "train_cpu_demo.yaml")
    rl = rl_config(dataclasses.replace(cfg, stage="rl")).rl
    assert rl.save_steps < rl.num_steps and rl.num_steps % rl.save_steps == 0
    assert (rl.save_steps, rl.logging_steps, rl.gradient_accumulation_steps) != \
        (cfg.sft.save_steps, cfg.sft.logging_steps, cfg.sft.gradient_accumulation_steps)
    assert rl == cfg.rl  # the RL stage reads the section as it is: nothing copied or renamed


def test_help_is_grouped_by_section_with_the_field_comments():
    text = build_parser().format_help()
    for title in ("sft (SFTConfig)", "rl (GRPOConfig)", "rl.loss (LossConfig)",
                  "pipeline (PipelineConfig)", "aliases"):
        assert title in text
    loss = text[text.index("rl.loss (LossConfig)"):]
    assert "--rl.loss.epsilon-low" in loss and "clip ratio below 1 - epsilon_low" in loss


def test_tinker_help_lists_sections_and_comments(capsys):
    pytest.importorskip("chz")
    with pytest.raises(SystemExit):
        chz_config(TinkerTrainConfig, ["--help"], SECTION_DEFAULTS, "usage")
    text = capsys.readouterr().out
    assert "rl.loss (LossConfig)" in text and "rl.group_size=16" in text
    assert "sft.batch_size=32" in text  # Tinker's own default shown
    assert "rollouts per problem" in text and "group_size=  sets rl.group_size" in text


# -- one definition per setting -----------------------------------------------------------
# The same name in two classes of the tree, each its own setting in its own section (the
# path tells them apart); anything else defined twice is a second definition of one setting.
HOMONYMS = {
    "learning_rate": "sft.learning_rate (2e-5) and rl.learning_rate (1e-6)",
    "batch_size": "sft: examples per device per micro-batch; rl: problems per step",
    "gradient_accumulation_steps": "sft: micro-batches per step; rl: per mini-batch",
    "save_steps": "each stage checkpoints on its own schedule",
    "logging_steps": "each stage logs on its own schedule",
    "output_dir": "TrainConfig: the run's root; RLMathConfig: the RL stage's own folder",
    "stage": "TrainConfig: cot|tir|rl|full; Tinker: cot|tir of its SFT entry point",
    "gradient_checkpointing": "sft's (TRL) and rl's (the local RL backend)",
}


def _classes(cls: type) -> set[type]:
    """Every dataclass in the tree under `cls`, with the field groups it inherits."""
    out = set()
    for section in section_paths(cls).values():
        out |= {k for k in section.__mro__ if dataclasses.is_dataclass(k)}
    return out


def test_no_setting_is_defined_in_two_places():
    classes = set().union(*(_classes(c) for c in (TrainConfig, RLMathConfig, TinkerTrainConfig)))
    where: dict[str, list[str]] = {}
    for klass in classes:
        for name, annotation in inspect.get_annotations(klass).items():
            if "ClassVar" in str(annotation) or is_section(field_types(klass)[name]):
                continue
            # a subclass giving its base's field another default (RolloutVLLMConfig's RL
            # defaults for VLLMConfig) is the same field, not a second one
            if any(name in inspect.get_annotations(base) for base in klass.__mro__[1:]):
                continue
            where.setdefault(name, []).append(klass.__qualname__)
    twice = {n: sorted(ks) for n, ks in where.items() if len(ks) > 1 and n not in HOMONYMS}
    assert not twice, f"defined in more than one config class: {twice}"
    stale = [n for n in HOMONYMS if len(where.get(n, [])) < 2]
    assert not stale, f"no longer defined twice: drop from HOMONYMS: {stale}"


def test_loss_defaults_are_written_once():
    """policy_loss's keyword defaults are LossConfig's (rl/loss.py reads them from there)."""
    from aimo3_recipe.rl.loss import policy_loss

    params = inspect.signature(policy_loss).parameters
    for name in ("epsilon_low", "epsilon_high", "beta"):
        assert params[name].default == getattr(LossConfig(), name)
    src = (REPO / "aimo3_recipe" / "rl" / "loss.py").read_text()
    assert "0.28" not in src and "0.2," not in src
    assert "0.28" not in (REPO / "aimo3_recipe" / "rl" / "tinker_backend.py").read_text()


def test_tinker_refuses_settings_it_cannot_honour():
    """A local-only setting given to a Tinker entry point stops it before anything is spent
    (instead of being ignored); Tinker's own defaults pass."""
    from aimo3_recipe.config import from_dict
    from aimo3_recipe.training.tinker_rl_math import check_rl
    from aimo3_recipe.training.tinker_sft_math import check_sft

    check_rl(TinkerTrainConfig())
    check_sft(TinkerTrainConfig())
    for path, value, match in [("rl.vllm.gpu_memory_utilization", 0.5, r"rl\.vllm=.*sampled by"),
                               ("rl.gradient_checkpointing", True, "rl.gradient_checkpointing"),
                               ("rl.loss.beta", 0.1, "no KL")]:
        with pytest.raises(ConfigError, match=match):
            check_rl(from_dict(TinkerTrainConfig, {path: value}))
    with pytest.raises(ConfigError, match=r"sft\.packing=False: Tinker SFT cannot honour"):
        check_sft(from_dict(TinkerTrainConfig, {"sft.packing": False}))
