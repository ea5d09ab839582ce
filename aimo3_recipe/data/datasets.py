"""Named maths datasets (hub or local file) read into one record shape, `MathRecord`.

`load_math_dataset(name_or_path)` takes a registry name (`DATASETS`: numina_cot, numina_tir,
openmath_cot/tir/genselect, math, math500, gsm8k, aime24, aime25, amc23, aimo, synthetic) or
a local .jsonl / .json / .csv / .parquet file. Field names are mapped by one rule for all of
them (problem|question|Problem, solution|generated_solution, answer|expected_answer), with
the answer falling back to GSM8K's "#### N" and then to the last \\boxed{} of the solution,
and normalised ("025" -> "25", "27.0" -> "27").

Malformed rows (missing problem, broken JSON line, no usable answer) are skipped and
counted, with one warning per load; a load never crashes on a bad row. Hub loading uses
`datasets.load_dataset` (streaming for the large sets) and stops after `max_samples` rows;
without hub access pass a local path instead.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimo3_recipe.data.preprocessing import normalize_answer, reference_answer
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.exceptions import DatasetError

__all__ = ["DATASETS", "DatasetSpec", "LoadReport", "MathRecord", "load_math_dataset",
           "load_math_dataset_with_report", "row_to_record"]

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
DEFAULT_SYNTHETIC_SIZE = 2000  # items `load_math_dataset("synthetic")` makes without max_samples


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset lives on the hub and how to read it."""

    hub_id: str | None  # Hugging Face dataset id (None: local files only, or generated)
    split: str  # default split
    configs: tuple[str | None, ...] = (None,)  # hub config names, concatenated in order
    streaming: bool = False  # stream rows instead of downloading the whole set (large sets)
    tir: bool = False  # solutions are in the TIR text format (also stored as tir_solution)
    description: str = ""  # one line for --help and docs
    local_files: tuple[tuple[str, str], ...] = ()  # (split, file name) looked up in data_dir

    def local_file(self, split: str) -> str | None:
        return dict(self.local_files).get(split)


DATASETS: dict[str, DatasetSpec] = {
    "numina_cot": DatasetSpec("AI-MO/NuminaMath-CoT", "train", streaming=True,
                              description="~860k CoT solutions (answer: last \\boxed{})"),
    "numina_tir": DatasetSpec("AI-MO/NuminaMath-TIR", "train", tir=True,
                              description="~70k tool-integrated solutions"),
    "openmath_cot": DatasetSpec("nvidia/OpenMathReasoning", "cot", streaming=True,
                                description="3.2M long CoT solutions (split cot)"),
    "openmath_tir": DatasetSpec("nvidia/OpenMathReasoning", "tir", streaming=True, tir=True,
                                description="1.7M long TIR solutions (split tir)"),
    "openmath_genselect": DatasetSpec("nvidia/OpenMathReasoning", "genselect", streaming=True,
                                      description="566k solution-selection samples"),
    "math": DatasetSpec("EleutherAI/hendrycks_math", "test",
                        configs=("algebra", "counting_and_probability", "geometry",
                                 "intermediate_algebra", "number_theory", "prealgebra",
                                 "precalculus"),
                        description="Hendrycks MATH (test 5000 / train 7500)",
                        local_files=(("test", "math_test5000.jsonl"),
                                     ("train", "math_train7500_answers_only.jsonl"))),
    "math_train": DatasetSpec("EleutherAI/hendrycks_math", "train",
                              configs=("algebra", "counting_and_probability", "geometry",
                                       "intermediate_algebra", "number_theory", "prealgebra",
                                       "precalculus"),
                              description="Hendrycks MATH train, 7500 (RL: checkable answers)",
                              local_files=(("train", "math_train7500_answers_only.jsonl"),)),
    "math500": DatasetSpec("HuggingFaceH4/MATH-500", "test",
                           description="500-problem subset of MATH test",
                           local_files=(("test", "math500.jsonl"),)),
    "gsm8k": DatasetSpec("openai/gsm8k", "test", configs=("main",),
                         description="grade-school word problems (answer after ####)",
                         local_files=(("test", "gsm8k_test.jsonl"),
                                      ("train", "gsm8k_train.jsonl"))),
    "aime24": DatasetSpec("HuggingFaceH4/aime_2024", "train", description="AIME 2024, 30",
                          local_files=(("train", "aime24.jsonl"),)),
    "aime25": DatasetSpec("opencompass/AIME2025", "test", configs=("AIME2025-I", "AIME2025-II"),
                          description="AIME 2025, 30", local_files=(("test", "aime25.jsonl"),)),
    "amc23": DatasetSpec("math-ai/amc23", "test", description="AMC 2023, 40",
                         local_files=(("test", "amc23.jsonl"),)),
    "aimo": DatasetSpec(None, "test", description="AIMO3 csv (id,problem[,answer]): pass a path"),
    "synthetic": DatasetSpec(None, "train", tir=True,
                             description="offline generator (data/synthetic.py)"),
}
# Names users also type (the evaluation CLI says `aime`, `amc`).
ALIASES = {"aime": "aime24", "amc": "amc23", "math_test": "math", "openmath": "openmath_cot"}


@dataclass
class LoadReport:
    """What a load read and what it skipped, by reason."""

    source: str  # dataset name or file path
    rows_read: int = 0  # rows seen (including skipped ones)
    kept: int = 0  # records returned
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
        return (f"{self.source}: kept {self.kept} of {self.rows_read} rows"
                + (f"; skipped {reasons}" if reasons else ""))


# ----------------------------------------------------------------------------- row mapping

_PROBLEM_FIELDS = ("problem", "question", "Problem", "Question", "prompt")
_SOLUTION_FIELDS = ("solution", "generated_solution", "Solution")
_ANSWER_FIELDS = ("answer", "expected_answer", "Answer", "final_answer")
_ID_FIELDS = ("id", "unique_id", "idx", "ID", "problem_idx")
_SUBJECT_FIELDS = ("subject", "type", "problem_type")


def _first(row: dict[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip() != "":
            return value
    return None


def _level(value: Any) -> int | None:
    """MATH levels come as 3 or "Level 3"; "Level ?" (a few rows) becomes None."""
    if value is None:
        return None
    text = str(value).replace("Level", "").strip()
    return int(text) if text.isdigit() else None


_CALCULATOR_RE = re.compile(r"<<[^<>]*>>")


def _gsm8k_solution(text: str) -> str:
    """GSM8K's worked answer in our format: no <<calculator>> notes, "#### N" -> \\boxed{N}."""
    body, _, final = text.rpartition("####")
    body = _CALCULATOR_RE.sub("", body).rstrip()
    return f"{body}\nThe answer is \\boxed{{{normalize_answer(final)}}}."


def _openmath_tir_to_ours(solution: str) -> str:
    """OpenMathReasoning wraps code in <tool_call> tags; our TIR format has bare fences."""
    return solution.replace("<tool_call>\n", "").replace("\n</tool_call>", "") \
        .replace("<tool_call>", "").replace("</tool_call>", "")


def row_to_record(row: dict[str, Any], source: str, *, tir: bool = False,
                  require_answer: bool = True) -> tuple[MathRecord | None, str | None]:
    """Map one raw row to a MathRecord, or (None, reason it was skipped)."""
    problem = _first(row, _PROBLEM_FIELDS)
    if problem is None:
        return None, "missing problem"
    solution = str(_first(row, _SOLUTION_FIELDS) or "")
    raw_answer = _first(row, _ANSWER_FIELDS)
    answer = reference_answer(solution, None if raw_answer is None else str(raw_answer))
    if raw_answer is not None and "####" in str(raw_answer) and not solution:
        # GSM8K keeps its worked solution and the answer in one field
        solution = _gsm8k_solution(str(raw_answer))
    answer = normalize_answer(answer) if answer is not None else None
    if not answer:
        if require_answer:
            return None, "no usable answer"
        answer = ""
    if tir:
        solution = _openmath_tir_to_ours(solution)
    metadata: dict[str, Any] = {}
    for key, names in (("id", _ID_FIELDS), ("subject", _SUBJECT_FIELDS)):
        value = _first(row, names)
        if value is not None:
            metadata[key] = value
    level = _level(row.get("level"))
    if level is not None:
        metadata["level"] = level
    for key in ("url", "year", "problem_source", "inference_mode", "generation_model"):
        if row.get(key) not in (None, ""):
            metadata[key] = row[key]
    if isinstance(row.get("source"), str):  # NuminaMath's origin (olympiads, amc_aime, ...)
        metadata["origin"] = row["source"]
    if tir and solution:
        metadata["tir_solution"] = solution
    return MathRecord(problem=str(problem).strip(), solution=solution, answer=answer,
                      source=source, metadata=metadata), None


# ----------------------------------------------------------------------------- readers

_BROKEN = object()  # sentinel a reader yields for a row it could not parse


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield _BROKEN


def _read_local(path: Path) -> Iterator[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # many ".json" files are really JSON Lines
            yield from _read_jsonl(path)
            return
        if isinstance(data, dict):  # {"data": [...]} or column-less single object
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        yield from data
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    else:
        raise DatasetError(f"cannot read {path}: expected one of {list(LOCAL_SUFFIXES)}")


def _read_hub(name: str, spec: DatasetSpec, split: str) -> Iterator[Any]:
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise DatasetError("loading from the hub needs the `datasets` package") from e
    for config in spec.configs:
        try:
            ds = load_dataset(spec.hub_id, config, split=split, streaming=spec.streaming)
        except Exception as e:
            raise DatasetError(
                f"could not load dataset {name!r} ({spec.hub_id}, config={config}, "
                f"split={split}) from the Hugging Face hub: {e}. Without hub access pass a "
                f"local .jsonl/.csv/.parquet path instead of the name.") from e
        yield from ds


# ----------------------------------------------------------------------------- public API

def default_data_dir() -> Path | None:
    """`$AIMO3_DATA_DIR`: a folder of local benchmark files used before the hub."""
    value = os.environ.get("AIMO3_DATA_DIR")
    return Path(value) if value else None


def _resolve(name_or_path: str) -> tuple[str, DatasetSpec | None, Path | None]:
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise DatasetError(f"dataset file {str(path)!r} does not exist; pass an existing "
                               f".jsonl/.csv/.parquet file or one of {sorted(DATASETS)}")
        return path.stem, None, path
    name = ALIASES.get(name_or_path, name_or_path)
    if name not in DATASETS and re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return name, DatasetSpec(name, "train", description="hub dataset by id"), None
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name_or_path!r}: use one of {sorted(DATASETS)} "
                           f"or a path to a .jsonl/.csv/.parquet file")
    return name, DATASETS[name], None


def load_math_dataset_with_report(name_or_path: str, *, split: str | None = None,
                                  max_samples: int | None = None,
                                  require_answer: bool = True,
                                  data_dir: str | Path | None = None,
                                  ) -> tuple[list[MathRecord], LoadReport]:
    """Like `load_math_dataset`, and also say what was read and skipped."""
    name, spec, path = _resolve(str(name_or_path))
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if spec is not None and data_dir is not None:
        local = spec.local_file(split or spec.split)
        if local and (data_dir / local).is_file():
            path = data_dir / local
    report = LoadReport(source=str(path) if path else name)
    if max_samples is not None and max_samples < 0:
        raise DatasetError(f"max_samples must be >= 0 or None; got {max_samples}")
    if spec is not None and name == "synthetic":
        from aimo3_recipe.data.synthetic import generate_synthetic

        records = generate_synthetic(DEFAULT_SYNTHETIC_SIZE if max_samples is None
                                     else max_samples)
        report.rows_read = report.kept = len(records)
        return records, report
    if spec is not None and spec.hub_id is None and path is None:
        raise DatasetError(f"dataset {name!r} has no hub copy ({spec.description}); pass the "
                           f"path of the file instead")

    rows = _read_local(path) if path else _read_hub(name, spec, split or spec.split)
    tir = bool(spec and spec.tir)
    records: list[MathRecord] = []
    for row in rows:
        if max_samples is not None and len(records) >= max_samples:
            break
        report.rows_read += 1
        if row is _BROKEN or not isinstance(row, dict):
            report.skipped["broken row (not a JSON object)"] += 1
            continue
        record, reason = row_to_record(row, name, tir=tir, require_answer=require_answer)
        if record is None:
            report.skipped[reason] += 1
            continue
        records.append(record)
    report.kept = len(records)
    if report.num_skipped:
        logger.warning("skipped %d malformed rows while loading %s", report.num_skipped,
                       report.summary())
    return records, report


def load_math_dataset(name_or_path: str, *, split: str | None = None,
                      max_samples: int | None = None, require_answer: bool = True,
                      data_dir: str | Path | None = None) -> list[MathRecord]:
    """Records of a named dataset or a local .jsonl/.json/.csv/.parquet file.

    A name is read from `data_dir` (or `$AIMO3_DATA_DIR`) when its file is there
    (`DatasetSpec.local_files`), else from the hub. `split` overrides the registry's default
    split; `max_samples` keeps the first N usable rows; `require_answer=False` keeps rows
    without an answer (a competition test file with only id,problem) with `answer=""`.
    """
    return load_math_dataset_with_report(name_or_path, split=split, max_samples=max_samples,
                                         require_answer=require_answer, data_dir=data_dir)[0]
