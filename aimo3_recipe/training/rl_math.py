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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimo3_recipe.config import flat_kwargs, replace_path
from aimo3_recipe.config_fields import LocalModelFields
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.rl.rewards import MathRewardFunction
from aimo3_recipe.utils.notice import notice

__all__ = ["MathRewardFunction", "RLMathConfig", "RLMathTrainer", "main"]


@flat_kwargs(renames={"device_map": "device", "torch_dtype": "dtype"})
@dataclass
class RLMathConfig(LocalModelFields):
    """The local RL stage: where and how to train, and the algorithm's settings in `rl`
    (GRPOConfig, the same section train.py's TrainConfig and the Tinker config hold).

    The seed's flat keywords still work as aliases onto the tree: `RLMathConfig(batch_size=4,
    save_steps=5, device_map="cpu", torch_dtype="float32")` sets rl.batch_size, rl.save_steps,
    device and dtype (any setting whose name is unique in the tree, e.g. epsilon_low)."""

    model_name_or_path: str = "default"  # the policy to start from (SFT output, hub id, 'default')
    output_dir: str = "./outputs/rl"  # this stage's folder
    eval_dataset: str | None = None  # held-out problems (None: generated ones never trained on)
    rl: GRPOConfig = field(default_factory=GRPOConfig)  # the algorithm (rl.*, rl.loss.*)


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
        rl = config.rl
        self.reward_fn = reward_fn or MathRewardFunction(
            correct_reward=rl.correct_reward, incorrect_reward=rl.incorrect_reward,
            format_reward=rl.format_reward)

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
        rl = cfg.rl
        run = Path(cfg.output_dir)
        accelerator, device = rank_setup(cfg.device)
        name = "the given records"
        if dataset is not None:
            problems = _as_records(dataset)
        else:
            name = rl.dataset or default_dataset(cfg.model_name_or_path, "rl")
            problems = _load(name, rl.max_samples, rl.seed)
        if not problems:
            raise ConfigError(f"RL has no training problems with answers in {name}; check "
                              "--rl.dataset")
        notice(f"[rl] dataset {dataset_label(name)}: {len(problems)} problems")
        if eval_dataset is not None:
            evals = _as_records(eval_dataset)
        elif cfg.eval_dataset:
            evals = _load(cfg.eval_dataset, rl.eval_samples, rl.seed)
        else:
            evals = held_out(problems, rl.eval_samples, rl.seed) if rl.eval_samples else []
        if rl.loss.beta and not cfg.use_lora:
            raise ConfigError(f"rl.loss.beta={rl.loss.beta} needs use_lora: the KL reference is "
                              "the base model with the adapter switched off (full fine-tuning "
                              "would need a second copy of the model); set rl.loss.beta 0 or "
                              "use_lora true")
        tokenizer = load_tokenizer(cfg.model_name_or_path)
        lora = LoraSettings(r=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=0.0) \
            if cfg.use_lora else None  # no dropout: trainer and sampler must be one policy
        load_dtype, autocast = training_precision(select_dtype(cfg.dtype, device), cfg.use_lora)
        model = load_model(cfg.model_name_or_path, device=device,
                           dtype=str(load_dtype).removeprefix("torch."), lora=lora)
        vllm = _rollout_engine(cfg, model, accelerator.num_processes)  # None: transformers
        if vllm is not None and "16" in vllm.dtype and not rl.loss.tis_cap:
            # a 16-bit sampler drifts from the fp32 trainer (log-prob gap 0.03-0.07):
            # weight each token by min(exp(trainer - sampler), 2) (truncated IS)
            notice(f"RL: vLLM samples in {vllm.dtype}; truncated importance weights on "
                   "(rl.loss.tis_cap 2.0; set --rl.loss.tis-cap to choose)")
            cfg = replace_path(cfg, "rl.loss.tis_cap", 2.0)
            rl = cfg.rl
        checkpointing = rl.gradient_checkpointing
        if checkpointing is None:  # on CUDA memory is what limits the update; CPUs have RAM
            checkpointing = device.startswith("cuda")
        backend = LocalBackend(model, tokenizer, learning_rate=rl.learning_rate,
                               max_grad_norm=rl.max_grad_norm, vllm_engine=vllm,
                               accelerator=accelerator, gradient_checkpointing=checkpointing,
                               logprob_chunk_tokens=rl.logprob_chunk_tokens,
                               entropy_sample_tokens=rl.entropy_sample_tokens,
                               max_tokens_per_microbatch=rl.max_tokens_per_microbatch,
                               autocast_dtype=autocast)
        self.backend = backend
        start = 0
        found = latest_checkpoint(run / "checkpoints") if cfg.resume else None
        if found:
            path, start = found
            backend.load(path)
            # rank 0 writes the logs (loop.py), so rank 0 alone cuts them back: two ranks
            # rewriting one file at once could lose lines
            for log in ("metrics.jsonl", rl.samples_filename) if backend.rank == 0 else ():
                trim_jsonl(run / log, start)
            notice(f"RL resumes from {path} (step {start} of {rl.num_steps})")
        if rl.edge_filter_samples > 0:
            from aimo3_recipe.rl.edge_filter import edge_problems

            problems = edge_problems(rl, backend, problems, self.reward_fn, run)
        # rank 0 logs (another rank's logger would delete the metrics.jsonl rank 0 writes to)
        logger = MetricsLogger(run, cfg.report_to, resume=start > 0,
                               config={**dataclasses.asdict(cfg), "num_problems": len(problems),
                                       "num_eval_problems": len(evals)}) \
            if backend.rank == 0 else None
        try:
            train(rl, backend, problems, self.reward_fn, logger, run, eval_problems=evals,
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

    if cfg.rl.max_steps_off_policy == 0 or world_size > 1:
        # engine core in this process: new weights go in as tensors, not via a file
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # off-policy: vLLM's engine core keeps its own process, decoding while this one trains
    # (new weights then travel as a safetensors folder, on the rollout thread)
    extra = {}
    if world_size > 1:
        # one engine per rank on its own device, inside the process group torchrun started
        # (vLLM's torchrun mode, as TRL's colocate mode uses it); needs the engine in-process
        extra["distributed_executor_backend"] = "external_launcher"
    vllm_cfg = cfg.rl.vllm
    if cfg.rl.max_steps_off_policy > 0 and vllm_cfg.enable_sleep_mode:
        # the trainer puts the engine to sleep before every update, while off-policy rollouts
        # for the next step are still decoding on it: sleep mode and overlap exclude each other
        notice("RL: vLLM sleep mode off (rl.max_steps_off_policy > 0 decodes while the trainer "
               "steps); the engine keeps its GPU share (rl.vllm.gpu_memory_utilization)")
        vllm_cfg = dataclasses.replace(vllm_cfg, enable_sleep_mode=False)
    try:
        engine = VLLMEngine(resolve_model_path(cfg.model_name_or_path), seed=cfg.rl.seed,
                            config=vllm_cfg, weight_updates=True, **extra)
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
    """The RL stage's config from train.py's TrainConfig: its run-wide fields (the same group,
    so the same names) and its `rl` section, as they are."""
    from aimo3_recipe.training.checkpoint import stage_dirs
    from aimo3_recipe.training.sft_data import stage_dataset

    run_wide = {f.name: getattr(config, f.name) for f in dataclasses.fields(LocalModelFields)}
    model = starting_model(config)
    # the recipe's RL data, never inferred from the (SFT output) folder RL starts from
    rl = dataclasses.replace(config.rl, dataset=stage_dataset(config, "rl", model))
    return RLMathConfig(**run_wide, model_name_or_path=model,
                        output_dir=str(stage_dirs(config.output_dir, "rl")["root"]), rl=rl)


def main(config) -> Path:
    """`train.py --stage rl`: returns the trained model folder (`<output_dir>/rl/model`)."""
    return RLMathTrainer(rl_config(config)).train()
