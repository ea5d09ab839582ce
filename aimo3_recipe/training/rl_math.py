"""Stage 3, RL on answer correctness (GRPO): `python -m aimo3_recipe.training.train --stage rl`.

The seed's API: `RLMathTrainer(RLMathConfig(...), MathRewardFunction(...)).train(dataset)`.
This file only assembles things: the model (peft LoRA or full), the local backend
(rl/local_backend.py), the data, the logger; the algorithm is `rl.loop.train`, the same loop
the Tinker backend runs. Rollouts use the transformers engine sharing the live model, or vLLM
(`use_vllm`) with the new weights pushed in after every step.

Outputs in `output_dir`: config.json, metrics.jsonl, samples.jsonl (with `save_samples`),
checkpoints/step-N/ (rerunning the same command resumes from the newest, with the same data
order), adapter/ (LoRA), model/ (merged: what evaluate, the engines and the next stage read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimo3_recipe.config_fields import LoraFields
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.rl.rewards import MathRewardFunction
from aimo3_recipe.utils.notice import notice

__all__ = ["MathRewardFunction", "RLMathConfig", "RLMathTrainer", "main"]


@dataclass
class RLMathConfig(GRPOConfig, LoraFields):
    """The local RL stage: the algorithm's settings (GRPOConfig) plus where and how to train."""

    model_name_or_path: str = "default"  # the policy to start from (SFT output, hub id, 'default')
    output_dir: str = "./outputs/rl"  # this stage's folder
    eval_dataset: str | None = None  # held-out problems (None: generated ones never trained on)
    use_lora: bool = True  # train a LoRA adapter (merged into model/ at the end)
    lora_alpha: int = 128  # LoRA alpha
    device_map: str = "auto"  # auto | cpu | cuda | mps
    torch_dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (the trainer's)
    use_vllm: bool | str = "auto"  # rollouts on vLLM: auto (where installed, fast) | true | false
    gradient_checkpointing: bool | None = None  # recompute activations (None: on with CUDA)
    logprob_chunk_tokens: int = 1024  # positions per LM-head chunk (logits never all at once)
    entropy_sample_tokens: int = 256  # trained positions per micro-batch for train/entropy (0: all)
    report_to: str = "none"  # comma list: none, tensorboard, wandb (metrics.jsonl always)
    resume: bool = True  # continue from the newest checkpoint in output_dir

    def __post_init__(self) -> None:
        from aimo3_recipe.utils.hardware import parse_use_vllm

        super().__post_init__()
        self.use_vllm = parse_use_vllm(self.use_vllm)


def _as_records(dataset: Any) -> list[MathRecord]:
    """MathRecords from a list of records / dicts / a datasets.Dataset (dict rows go through
    the loaders' `row_to_record`: the same field names and answer rules); rows without a
    problem or a usable answer are skipped and counted by reason."""
    from collections import Counter

    from aimo3_recipe.data.datasets import row_to_record

    out: list[MathRecord] = []
    skipped: Counter[str] = Counter()
    for row in dataset:
        rec, why = (row, None) if isinstance(row, MathRecord) else row_to_record(dict(row), "user")
        if rec is not None and rec.problem and str(rec.answer).strip():
            out.append(rec)
        else:
            skipped[why or "no problem or answer"] += 1
    if skipped:
        notice(f"RL data: skipped {sum(skipped.values())} rows ("
               + ", ".join(f"{n} {why}" for why, n in skipped.items()) + ")")
    return out


def _load(name: str, max_samples: int | None, seed: int) -> list[MathRecord]:
    from aimo3_recipe.training.sft_data import load_records

    return _as_records(load_records(name, max_samples, seed))


def held_out(train: Sequence[MathRecord], n: int, seed: int) -> list[MathRecord]:
    """`n` held-out problems (data/heldout.py: the generator's skills in phrasings it never
    uses), none of them in `train`."""
    from aimo3_recipe.data.heldout import held_out_problems

    seen = {r.problem for r in train}
    return [r for r in held_out_problems(n + 16, seed=seed) if r.problem not in seen][:n]


class RLMathTrainer:
    def __init__(self, config: RLMathConfig, reward_fn: MathRewardFunction | None = None):
        self.config = config
        self.reward_fn = reward_fn or MathRewardFunction(
            correct_reward=config.correct_reward, incorrect_reward=config.incorrect_reward,
            format_reward=config.format_reward)

    def train(self, dataset: Iterable[Any] | None = None,
              eval_dataset: Iterable[Any] | None = None) -> Path:
        """Run RL; returns the final model folder (`<output_dir>/model`)."""
        from aimo3_recipe.models import LoraSettings, load_model, load_tokenizer, select_dtype
        from aimo3_recipe.rl.checkpoints import latest_checkpoint, trim_jsonl
        from aimo3_recipe.rl.local_backend import LocalBackend
        from aimo3_recipe.rl.loop import train
        from aimo3_recipe.training.devices import rank_setup, training_precision
        from aimo3_recipe.training.sft_data import dataset_label, default_dataset
        from aimo3_recipe.utils.ml_log import MetricsLogger

        cfg = self.config
        run = Path(cfg.output_dir)
        accelerator, device = rank_setup(cfg.device_map)
        name = "the given records"
        if dataset is not None:
            problems = _as_records(dataset)
        else:
            name = cfg.dataset or default_dataset(cfg.model_name_or_path, "rl")
            problems = _load(name, cfg.max_samples, cfg.seed)
        if not problems:
            raise ConfigError(f"RL has no training problems with answers in {name}; check "
                              "--rl-dataset")
        notice(f"[rl] dataset {dataset_label(name)}: {len(problems)} problems")
        if eval_dataset is not None:
            evals = _as_records(eval_dataset)
        elif cfg.eval_dataset:
            evals = _load(cfg.eval_dataset, cfg.eval_samples, cfg.seed)
        else:
            evals = held_out(problems, cfg.eval_samples, cfg.seed) if cfg.eval_samples else []
        tokenizer = load_tokenizer(cfg.model_name_or_path)
        lora = LoraSettings(r=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=0.0) \
            if cfg.use_lora else None  # no dropout: trainer and sampler must be one policy
        load_dtype, autocast = training_precision(select_dtype(cfg.torch_dtype, device),
                                                  cfg.use_lora)
        model = load_model(cfg.model_name_or_path, device=device,
                           dtype=str(load_dtype).removeprefix("torch."), lora=lora)
        vllm = _rollout_engine(cfg, model, accelerator.num_processes)  # None: transformers
        if vllm is not None and "16" in vllm.dtype and not cfg.tis_cap:
            # a 16-bit sampler drifts from the fp32 trainer (log-prob gap 0.03-0.07):
            # weight each token by min(exp(trainer - sampler), 2) (truncated IS)
            notice(f"RL: vLLM samples in {vllm.dtype}; truncated importance weights on "
                   "(tis_cap 2.0; set --tis-cap to choose)")
            cfg = dataclasses.replace(cfg, tis_cap=2.0)
        checkpointing = cfg.gradient_checkpointing
        if checkpointing is None:  # on CUDA memory is what limits the update; CPUs have RAM
            checkpointing = device.startswith("cuda")
        backend = LocalBackend(model, tokenizer, learning_rate=cfg.learning_rate,
                               max_grad_norm=cfg.max_grad_norm, vllm_engine=vllm,
                               accelerator=accelerator, gradient_checkpointing=checkpointing,
                               logprob_chunk_tokens=cfg.logprob_chunk_tokens,
                               entropy_sample_tokens=cfg.entropy_sample_tokens,
                               max_tokens_per_microbatch=cfg.max_tokens_per_microbatch,
                               autocast_dtype=autocast)
        self.backend = backend
        start = 0
        found = latest_checkpoint(run / "checkpoints") if cfg.resume else None
        if found:
            path, start = found
            backend.load(path)
            for log in ("metrics.jsonl", cfg.samples_filename):
                trim_jsonl(run / log, start)
            notice(f"RL resumes from {path} (step {start} of {cfg.num_steps})")
        # rank 0 logs (another rank's logger would delete the metrics.jsonl rank 0 writes to)
        logger = MetricsLogger(run, cfg.report_to, resume=start > 0,
                               config={"rl": cfg, "num_problems": len(problems),
                                       "num_eval_problems": len(evals)}) \
            if backend.rank == 0 else None
        try:
            train(cfg, backend, problems, self.reward_fn, logger, run, eval_problems=evals,
                  start_step=start)
        finally:
            if logger is not None:
                logger.close()
            backend.close()
        return save_policy(backend, tokenizer, run, dtype=autocast)


def _rollout_engine(cfg: RLMathConfig, model, world_size: int = 1):
    """A vLLM engine for rollouts when `use_vllm` picks it, else None (rollouts then run on
    the transformers engine sharing the live model: no second copy of the weights is loaded).
    "auto" falls back to transformers, with a notice, when vLLM is installed but broken."""
    import os

    from aimo3_recipe.exceptions import MissingDependencyError
    from aimo3_recipe.models import resolve_model_path
    from aimo3_recipe.utils.hardware import choose_vllm

    want, why = choose_vllm(cfg.use_vllm, model.device.type)
    if not want:
        if cfg.use_vllm == "auto":
            notice(f"RL rollouts: transformers ({why})")
        return None
    from aimo3_recipe.inference.vllm_engine import VLLMEngine

    # engine core in this process: new weights go in as tensors, not via a file
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    extra = {}
    if world_size > 1:
        # one engine per rank on its own device, inside the process group torchrun started
        # (vLLM's torchrun mode, as TRL's colocate mode uses it); needs the engine in-process
        extra["distributed_executor_backend"] = "external_launcher"
    try:
        engine = VLLMEngine(resolve_model_path(cfg.model_name_or_path), seed=cfg.seed,
                            max_model_len=4096, **extra)
    except MissingDependencyError as e:
        if cfg.use_vllm is True:
            raise
        notice(f"RL rollouts: transformers (auto: vLLM did not import: {e.__cause__ or e})")
        return None
    notice(f"RL rollouts: vLLM in {engine.dtype} ({why}); --use-vllm false for transformers")
    return engine


def save_policy(backend, tokenizer, run: Path, dtype=None) -> Path:
    """adapter/ (LoRA) and model/ (merged plain folder) from the trained policy; `dtype`:
    write model/ in it (fp32 master weights saved in the dtype the user trains in)."""
    from aimo3_recipe.rl.local_backend import merged_state_dict

    model = backend.policy
    if backend.rank != 0:
        return run / "model"
    if hasattr(model, "merge_adapter"):
        model.save_pretrained(run / "adapter")
        tokenizer.save_pretrained(run / "adapter")
        base = model.get_base_model()
        base.save_pretrained(run / "model", state_dict=merged_state_dict(model))
    elif dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        model.save_pretrained(run / "model", state_dict=state)
    else:
        model.save_pretrained(run / "model")
    tokenizer.save_pretrained(run / "model")
    return run / "model"


def starting_model(config) -> str:
    """--base-model if given; else the TIR (then CoT) stage's model in --output-dir."""
    from aimo3_recipe.training.checkpoint import stage_dirs
    from aimo3_recipe.training.config import TrainConfig

    if config.base_model != TrainConfig.base_model:
        return config.base_model
    for stage in ("tir", "cot"):
        model = stage_dirs(config.output_dir, stage)["model"]
        if (model / "config.json").is_file():
            notice(f"RL starts from the {stage.upper()} model {model} (--base-model changes it)")
            return str(model)
    return config.base_model


def rl_config(config) -> RLMathConfig:
    """The RL stage's config from train.py's TrainConfig (one field each, renamed where the
    SFT stages use the plain name)."""
    from aimo3_recipe.training.checkpoint import stage_dirs

    renamed = {"learning_rate": "rl_learning_rate", "batch_size": "rl_batch_size",
               "num_steps": "rl_steps", "mode": "rl_mode",
               "model_name_or_path": None, "output_dir": None, "device_map": "device",
               "torch_dtype": "dtype", "eval_dataset": None}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(RLMathConfig):
        src = renamed.get(f.name, f.name)
        if src is not None and hasattr(config, src):
            kwargs[f.name] = getattr(config, src)
    if getattr(config, "max_steps", -1) > 0:
        kwargs["num_steps"] = config.max_steps
    kwargs["model_name_or_path"] = starting_model(config)
    from aimo3_recipe.training.sft_data import stage_dataset

    # the recipe's RL data, never inferred from the (SFT output) folder RL starts from
    kwargs["dataset"] = stage_dataset(config, "rl", kwargs["model_name_or_path"])
    kwargs["output_dir"] = str(stage_dirs(config.output_dir, "rl")["root"])
    return RLMathConfig(**kwargs)


def main(config) -> Path:
    """`train.py --stage rl`: returns the trained model folder (`<output_dir>/rl/model`)."""
    return RLMathTrainer(rl_config(config)).train()
