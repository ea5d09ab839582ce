"""SFT training data: records -> (problem, solution) for the stage -> tokens and loss masks.

The renderer (`data/renderers.py`) decides the chat format and which tokens carry loss (the
assistant's tokens; in TIR not the ```output contents the executor writes). Here we only pick
each record's solution for the stage, tokenize, drop examples that teach nothing, and count.

Default data when `--dataset` is not given: the recipe's hub datasets (NuminaMath-CoT / -TIR)
for hub models, and the offline generator for the embedded default and local models (or when
HF_HUB_OFFLINE=1), since our machines have no hub access.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import DatasetError
from aimo3_recipe.utils.notice import notice

HUB_DATASETS = {"cot": "AI-MO/NuminaMath-CoT", "tir": "AI-MO/NuminaMath-TIR"}
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


def default_dataset(base_model: str, mode: str) -> str:
    """The dataset a stage trains on when none is named (see the module docstring)."""
    from aimo3_recipe.models import EMBEDDED_DEFAULT_ALIASES

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    name = str(base_model)
    is_hub_id = (name.count("/") == 1 and not name.startswith((".", "/", "~"))
                 and not Path(name).expanduser().exists())
    if offline or name.lower() in EMBEDDED_DEFAULT_ALIASES or not is_hub_id:
        return SYNTHETIC
    return HUB_DATASETS[mode]


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
