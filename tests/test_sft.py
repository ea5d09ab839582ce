"""Smoke tests of the SFT stages through the real CLI on a tiny random model (seconds each),
plus the small pure pieces (data selection, log renaming, pack length)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.renderers import IGNORE_INDEX
from aimo3_recipe.rl.config import GRPOConfig, LossConfig
from aimo3_recipe.training import train
from aimo3_recipe.training.config import SFTConfig, TrainConfig
from aimo3_recipe.training.metrics_callback import rename_logs
from aimo3_recipe.training.sft import pack_length
from aimo3_recipe.training.sft_data import default_dataset, solution_for, tokenize_records
from aimo3_recipe.utils.ml_log import read_metrics

FAST = ["--dataset", "synthetic", "--sft.max-seq-length", "256", "--sft.batch-size", "4",
        "--sft.gradient-accumulation-steps", "1", "--sft.logging-steps", "1",
        "--sft.save-steps", "100", "--lora-rank", "4", "--lora-alpha", "8"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """2 shared cores: OpenMP threads spinning against other processes make tiny models ~20x
    slower, so these tests run torch single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cot_run(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft-cot")
    rc = train.cli(["--stage", "cot", "--base-model", str(tiny_model_dir), "--output-dir", str(out),
                    "--max-samples", "16", "--sft.max-steps", "4", "--sft.learning-rate", "1e-2", *FAST])
    assert rc == 0
    return out


def _losses(run_dir: Path) -> list[float]:
    return [r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r]


def test_cot_cli_writes_model_adapter_metrics_and_config(cot_run):
    stage = cot_run / "cot"
    assert (stage / "model" / "config.json").is_file()
    assert (stage / "adapter" / "adapter_config.json").is_file()
    assert (stage / "checkpoints").is_dir()
    rows = read_metrics(stage)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    for key in ("train/loss", "train/lr", "train/grad_norm"):
        assert all(isinstance(r[key], float) for r in train_rows), key
    assert any(r.get("train/tokens_per_s", 0) > 0 for r in train_rows)
    saved = json.loads((stage / "config.json").read_text())
    assert saved["train"]["stage"] == "cot" and saved["train"]["sft"]["dataset"] == "synthetic"
    assert "rl" not in saved["train"]  # the SFT stage's config holds its own section only
    assert saved["data"]["examples"] == 16 and saved["packing_layout"] == "rows"


def test_cot_training_changes_parameters(cot_run, tiny_model_dir):
    from safetensors.torch import load_file

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    merged = load_file(str(cot_run / "cot" / "model" / "model.safetensors"))
    assert set(base) == set(merged)  # a plain model: no lora_ keys left after merging
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert any("q_proj" in k for k in changed) and any("mlp" in k for k in changed)


def test_merged_model_and_adapter_load_agree_and_generate(cot_run):
    from aimo3_recipe.models import load_model, load_tokenizer

    stage = cot_run / "cot"
    merged = load_model(stage / "model", device="cpu")
    adapter = load_model(stage / "adapter", device="cpu")
    tok = load_tokenizer(stage / "model")
    ids = tok("What is 12 + 35?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapter(ids).logits, atol=1e-4, rtol=1e-4)
        out = merged.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    assert load_tokenizer(stage / "adapter").chat_template == tok.chat_template


def test_full_finetune_loss_goes_down_on_a_repeated_batch(tiny_model_dir, tmp_path):
    # 4 examples, batch 4: every step sees the same batch
    rc = train.cli(["--stage", "cot", "--base-model", str(tiny_model_dir), "--output-dir",
                    str(tmp_path), "--max-samples", "4", "--sft.max-steps", "8", "--use-lora", "false",
                    "--sft.learning-rate", "3e-3", "--sft.warmup-ratio", "0", *FAST])
    assert rc == 0
    losses = _losses(tmp_path / "cot")
    assert len(losses) == 8 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.3, losses
    assert not (tmp_path / "cot" / "adapter").exists()
    from aimo3_recipe.models import load_model

    assert load_model(tmp_path / "cot" / "model", device="cpu").num_parameters() > 0


def test_tir_stage_starts_from_the_cot_model(cot_run, capsys):
    rc = train.cli(["--stage", "tir", "--output-dir", str(cot_run), "--max-samples", "8",
                    "--sft.max-steps", "2", "--sft.learning-rate", "1e-2", *FAST])
    assert rc == 0
    assert "TIR starts from the CoT model" in capsys.readouterr().err
    saved = json.loads((cot_run / "tir" / "config.json").read_text())
    assert saved["train"]["base_model"] == str(cot_run / "cot" / "model")
    assert len(_losses(cot_run / "tir")) == 2
    assert (cot_run / "tir" / "model" / "config.json").is_file()


def test_qlora_without_lora_is_a_config_error(tiny_model_dir, tmp_path, capsys):
    rc = train.cli(["--stage", "cot", "--base-model", str(tiny_model_dir), "--output-dir",
                    str(tmp_path), "--use-lora", "false", "--sft.quant-bits", "4"])
    assert rc == 2
    assert "--use-lora true" in capsys.readouterr().err


# ---- pure pieces -------------------------------------------------------------------------

def test_rl_only_flags_are_errors_for_sft_stages_not_silent(capsys):
    from aimo3_recipe.exceptions import ConfigError
    from aimo3_recipe.training import train
    from aimo3_recipe.training.config import SFTConfig, check_stage_fields, sft_view

    check_stage_fields(TrainConfig(stage="cot"))  # nothing set: fine
    with pytest.raises(ConfigError, match="--rl.eval-steps.*RL stage only"):
        check_stage_fields(TrainConfig(stage="tir", eval_steps=5))
    with pytest.raises(ConfigError, match="--rl.loss.tis-cap.*RL stage only"):
        check_stage_fields(TrainConfig(stage="tir", rl=GRPOConfig(loss=LossConfig(tis_cap=2.0))))
    # given explicitly, even at its default value
    with pytest.raises(ConfigError, match="--rl.save-samples"):
        check_stage_fields(TrainConfig(stage="cot"),
                           given={"rl.save_samples", "sft.learning_rate"})
    for stage in ("rl", "full"):  # the RL stage reads them
        check_stage_fields(TrainConfig(stage=stage, eval_steps=5, save_samples=True))
    # what an SFT stage records as its config: the run-wide fields and its section only
    view = sft_view(TrainConfig(stage="cot", sft=SFTConfig(learning_rate=1e-4)))
    assert view["sft"]["learning_rate"] == 1e-4 and "rl" not in view and "pipeline" not in view
    # the command line: one-line error before any model is loaded
    assert train.cli(["--stage", "cot", "--eval-samples", "50",
                      "--samples-filename", "s.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--eval-samples" in err and "--samples-filename" in err and "RL stage only" in err
    assert "Traceback" not in err


def test_tir_tokens_mask_the_tool_output(tiny_tokenizer):
    record = MathRecord(problem="What is 2+3?", solution="2+3=5. \\boxed{5}", answer="5",
                        source="t", metadata={"tir_solution": "```python\nprint(2+3)\n```\n"
                                              "```output\n5\n```\nSo \\boxed{5}."})
    dataset, stats = tokenize_records([record], tiny_tokenizer, "tir", max_length=1000)
    ids, labels = dataset[0]["input_ids"], dataset[0]["labels"]
    trained = tiny_tokenizer.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])
    assert "print(2+3)" in trained and "So \\boxed{5}." in trained
    assert "What is 2+3?" not in trained  # the prompt carries no loss
    assert "```output\n5" not in trained  # the executor's output carries no loss
    assert stats.examples == 1 and 0 < stats.trainable_tokens < stats.tokens == len(ids)


def test_records_without_a_stage_solution_are_skipped(tiny_tokenizer):
    records = [MathRecord("p1", "s1 \\boxed{1}", "1", "t"), MathRecord("p2", "", "2", "t")]
    _, stats = tokenize_records(records, tiny_tokenizer, "cot", max_length=1000)
    assert (stats.records, stats.no_solution, stats.examples) == (2, 1, 1)
    assert solution_for(records[0], "tir") == "s1 \\boxed{1}"  # no tir_solution: own solution
    from aimo3_recipe.exceptions import DatasetError

    with pytest.raises(DatasetError, match="no training examples"):
        tokenize_records(records[1:], tiny_tokenizer, "cot", max_length=1000)


def test_each_stage_trains_on_the_recipes_dataset_never_inferred_from_the_model_path(
        tmp_path, monkeypatch):
    """Issue 22.1: `--stage full` hands stage 2 the CoT stage's folder; a folder (or an
    offline hub) used to make the TIR and RL stages train on the generator's 1,000 school
    problems. Only the embedded demo model defaults to the generator."""
    from aimo3_recipe.data.datasets import DATASETS
    from aimo3_recipe.training.sft_data import stage_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "cot" / "model"
    folder.mkdir(parents=True)
    assert default_dataset(str(folder), "tir") == "numina_tir"
    assert default_dataset("./outputs/qwen14b/cot/model", "tir") == "numina_tir"
    assert default_dataset("Qwen/Qwen2.5-14B", "cot") == "numina_cot"
    assert default_dataset(str(folder), "rl") == "math_train"
    assert default_dataset("default", "cot") == "synthetic"
    # the 14B preset names hub datasets for every stage (resolved, not downloaded)
    root = Path(__file__).resolve().parents[1] / "configs"
    from aimo3_recipe.config import load_config

    qwen = load_config(TrainConfig, root / "train_qwen_14b.yaml")
    hub = {s: DATASETS[stage_dataset(qwen, s, str(folder))].hub_id for s in ("cot", "tir", "rl")}
    assert hub == {"cot": "AI-MO/NuminaMath-CoT", "tir": "AI-MO/NuminaMath-TIR",
                   "rl": "EleutherAI/hendrycks_math"}
    assert DATASETS["math_train"].split == "train"  # never the MATH test split RL is judged on
    demo = load_config(TrainConfig, root / "train_cpu_demo.yaml")
    assert {stage_dataset(demo, s, str(folder)) for s in ("cot", "tir", "rl")} == {"synthetic"}
    # --dataset names one dataset for every stage (an alias: sft.dataset and rl.dataset)
    from aimo3_recipe.training.config import SFTConfig

    one = TrainConfig(dataset="gsm8k", sft=SFTConfig(tir_dataset="numina_tir"))
    assert stage_dataset(one, "tir") == "gsm8k" and stage_dataset(one, "rl") == "gsm8k"


def test_rename_logs_namespaces_and_drops():
    logs = {"loss": 1.5, "grad_norm": 0.25, "learning_rate": 2e-5, "num_tokens": 7.0,
            "mean_token_accuracy": 0.5, "total_flos": 3.0, "custom/x": 1, "note": "text"}
    assert rename_logs(logs) == {"train/loss": 1.5, "train/grad_norm": 0.25, "train/lr": 2e-5,
                                 "train/token_accuracy": 0.5, "custom/x": 1}


def test_pack_length():
    from aimo3_recipe.training.config import SFTConfig

    assert pack_length(SFTConfig(max_seq_length=100), [10, 40, 30]) == 40  # the longest example
    assert pack_length(SFTConfig(max_seq_length=100, pack_length=64), [10, 40]) == 64
    assert pack_length(SFTConfig(max_seq_length=50, pack_length=64), [10, 40]) == 50


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"),
                                       ("deepspeed_zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.distributed_type.name == kind and config.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"]  # plain weights on save
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_full_finetuning_in_bf16_keeps_fp32_master_weights(tiny_model_dir, tmp_path):
    """Issue 22.5: with --dtype bfloat16 and full fine-tuning, the model trains on fp32
    weights under bf16 autocast; in pure bf16 a 2e-5 step on weights of ~0.02 (half an ulp
    is ~6e-5) rounds away and most weights never move."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from aimo3_recipe.training.sft import run_sft

    class Grab(TrainerCallback):
        weights: ClassVar[dict[str, torch.Tensor]] = {}

        def on_train_end(self, args, state, control, model=None, **kwargs):
            Grab.weights = {n: p.detach().clone() for n, p in model.named_parameters()}

    cfg = TrainConfig(stage="cot", base_model=str(tiny_model_dir), output_dir=str(tmp_path),
                      use_lora=False, dtype="bfloat16", device="cpu",
                      sft=SFTConfig(dataset="synthetic", max_samples=8, max_steps=2, batch_size=4,
                                    gradient_accumulation_steps=1, learning_rate=2e-5,
                                    warmup_ratio=0.0, max_seq_length=256, save_steps=100))
    run_sft(cfg, "cot", callbacks=[Grab()])
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = {n.removeprefix("model.") if n.removeprefix("model.") in before else n: w
             for n, w in Grab.weights.items()}
    assert all(w.dtype == torch.float32 for w in after.values())
    matrices = [n for n in before if before[n].dim() == 2 and n in after]
    moved = sum(int((after[n] != before[n].float()).sum()) for n in matrices)
    total = sum(before[n].numel() for n in matrices)
    assert moved / total > 0.9, moved / total
    deltas = torch.cat([(after[n] - before[n].float()).abs().flatten() for n in matrices])
    assert 1e-5 < float(deltas[deltas > 0].median()) < 1e-4  # Adam: ~lr per step, 2 steps
