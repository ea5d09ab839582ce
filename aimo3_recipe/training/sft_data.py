"""SFT training data: records -> (problem, solution) for the stage -> tokens and loss masks.

The renderer (`data/renderers.py`) decides the chat format and which tokens carry loss (the
assistant's tokens; in TIR not the ```output contents the executor writes). Here we only pick
each record's solution for the stage, tokenize, drop examples that teach nothing, and count.

Which data each stage trains on is the recipe's choice, named per stage in the config
(`sft.cot_dataset`, `sft.tir_dataset`, `rl.dataset`; `sft.dataset` overrides both SFT
stages', and the `--dataset` alias sets sft.dataset and rl.dataset), never inferred
from the model's path: `--stage full` hands each stage the previous stage's folder, and a
folder must not turn the 14B recipe's data into the generator's school problems. When a
stage's field is empty, the recipe's default is used (`STAGE_DATASETS`: NuminaMath-CoT,
NuminaMath-TIR, MATH train's checkable answers), except for the embedded 135M demo model,
which trains on the offline generator. The CPU preset names the generator explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import DatasetError
from aimo3_recipe.utils.notice import notice

# the recipe's data per stage (names of data/datasets.py's registry; their hub ids there)
STAGE_DATASETS = {"cot": "numina_cot", "tir": "numina_tir", "rl": "math_train"}
# the config path naming each stage's data (training/config.py)
STAGE_DATASET_FIELDS = {"cot": "sft.cot_dataset", "tir": "sft.tir_dataset", "rl": "rl.dataset"}
SYNTHETIC = "synthetic"
DEFAULT_SYNTHETIC_SAMPLES = 1000  # generated problems when --max-samples is not given


@dataclass
class DataStats:
    """What happened to the records on their way to training examples."""

    records: int = 0  # records read
    no_solution: int = 0  # skipped: no solution for this stage
    no_trainable: int = 0  # skipped: nothing left to train on after truncation
    truncated: int = 0  # kept but cut at max_seq_length
    examples: int = 0  # training examples produced
    tokens: int = 0  # tokens in those examples
    trainable_tokens: int = 0  # tokens that carry loss


def default_dataset(base_model: str, stage: str) -> str:
    """The recipe's dataset for `stage` (cot | tir | rl) when the config names none: the
    generator for the embedded demo model only; any other model, hub id or local folder,
    gets `STAGE_DATASETS[stage]` (a folder says nothing about what the recipe trains on)."""
    from aimo3_recipe.models import EMBEDDED_DEFAULT_ALIASES, EMBEDDED_DEFAULT_NAME

    if stage not in STAGE_DATASETS:
        raise ValueError(f"stage must be one of {sorted(STAGE_DATASETS)}; got {stage!r}")
    name = str(base_model)
    if name.lower() in EMBEDDED_DEFAULT_ALIASES or name == EMBEDDED_DEFAULT_NAME:
        return SYNTHETIC
    return STAGE_DATASETS[stage]


def stage_dataset(config, stage: str, base_model: str | None = None) -> str:
    """The dataset `stage` trains on (`config`: a TrainConfig): `sft.dataset` (both SFT
    stages), else the stage's own path (`sft.cot_dataset` ...), else `default_dataset` for
    `base_model` (default: the config's)."""
    from aimo3_recipe.config import get_path

    override = config.sft.dataset if stage in ("cot", "tir") else None
    named = override or get_path(config, STAGE_DATASET_FIELDS[stage])
    return named or default_dataset(base_model or config.base_model, stage)


def dataset_label(name: str) -> str:
    """`name` with its hub id when it is a registry name (for the line each stage prints)."""
    from aimo3_recipe.data.datasets import DATASETS

    spec = DATASETS.get(name)
    return f"{name} ({spec.hub_id})" if spec is not None and spec.hub_id else name


def load_records(dataset: str, max_samples: int | None, seed: int) -> list[MathRecord]:
    """Records from the offline generator ('synthetic') or `load_math_dataset`."""
    if dataset == SYNTHETIC:
        from aimo3_recipe.data.synthetic import generate_synthetic

        return generate_synthetic(max_samples or DEFAULT_SYNTHETIC_SAMPLES, seed=seed)
    from aimo3_recipe.data.datasets import load_math_dataset

    return load_math_dataset(dataset, max_samples=max_samples)


def solution_for(record: MathRecord, mode: str) -> str:
    """The solution a stage trains on: TIR uses `metadata['tir_solution']` when the record
    has one (synthetic data), else the record's own solution (TIR datasets store it there)."""
    if mode == "tir":
        return str(record.metadata.get("tir_solution") or record.solution or "")
    return record.solution or ""


def tokenize_records(records: list[MathRecord], tokenizer, mode: str, max_length: int):
    """Render every record; returns (datasets.Dataset with input_ids/labels, DataStats)."""
    from datasets import Dataset

    from aimo3_recipe.data.renderers import IGNORE_INDEX, render_example

    stats = DataStats(records=len(records))
    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for record in records:
        solution = solution_for(record, mode)
        if not solution.strip():
            stats.no_solution += 1
            continue
        example = render_example(tokenizer, record.problem, solution, mode=mode)
        input_ids, labels = example.input_ids[:max_length], example.labels[:max_length]
        trainable = sum(label != IGNORE_INDEX for label in labels)
        if trainable == 0:
            stats.no_trainable += 1
            continue
        stats.truncated += len(example.input_ids) > max_length
        stats.examples += 1
        stats.tokens += len(input_ids)
        stats.trainable_tokens += trainable
        rows["input_ids"].append(input_ids)
        rows["labels"].append(labels)
    if not stats.examples:
        raise DatasetError(f"no training examples: {stats.records} records read, "
                           f"{stats.no_solution} without a {mode} solution, {stats.no_trainable} "
                           f"with nothing to train on within --max-seq-length {max_length}. "
                           "Pass a dataset with solutions (--dataset) or raise --max-seq-length.")
    skipped = stats.no_solution + stats.no_trainable
    if skipped or stats.truncated:
        notice(f"SFT data: {stats.examples} examples from {stats.records} records "
               f"({stats.no_solution} without a {mode} solution and {stats.no_trainable} empty "
               f"after truncation skipped; {stats.truncated} truncated at {max_length} tokens)")
    return Dataset.from_dict(rows), stats
