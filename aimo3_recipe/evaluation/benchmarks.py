"""The benchmark registry: what `--benchmark NAME` means and where its problems come from.

Each benchmark names its datasets (hub sources through `data.datasets.load_math_dataset`), the
file names a local copy has, how its answers are judged, the prompt mode and the default
generation length. Problems are loaded in a fixed order, so problem `i` is the same problem
in every run (resuming depends on it).

Where the data comes from, first match wins:
1. `data_file` (`--data-file`): an explicit local jsonl/csv/parquet file for this benchmark;
2. `data_dir` (`--data-dir`, else `$AIMO3_DATA_DIR`): a folder holding the benchmark's usual
   file names (`math500.jsonl`, `aime24.jsonl`, ... as in `shared/data/`);
3. the Hugging Face hub (needs network access).
A path given as `--benchmark` is read as a generic maths benchmark.

`aimo` has no public hub copy: it reads Kaggle's AIMO3 `reference.csv` (`id,problem,answer`)
from `--data-file` or from `aimo3_reference.csv` / `reference.csv` in the data folder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aimo3_recipe.exceptions import ConfigError, DatasetError

ANSWER_TYPES = ("math", "number", "integer", "aimo")
_LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class BenchmarkPart:
    source: str  # dataset registry name (or hub id) given to load_math_dataset
    local_files: tuple[str, ...]  # file names a local copy may have, tried in order


@dataclass(frozen=True)
class Benchmark:
    name: str  # registry name (or the file stem of a local benchmark)
    parts: tuple[BenchmarkPart, ...]  # loaded in order and concatenated (aime = 2024 + 2025)
    answer_type: str  # math (any LaTeX) | number | integer | aimo (0..99999, modulus-aware)
    max_tokens: int  # default new tokens per completion
    mode: str = "cot"  # prompt mode for render_prompt: cot | tir
    prompt_suffix: str = ""  # appended to every problem statement
    description: str = ""  # one line for --help and reports

    @property
    def aimo(self) -> bool:
        return self.answer_type == "aimo"


@dataclass
class EvalProblem:
    index: int  # position in the benchmark (the resume key)
    id: str  # the dataset's id where it has one, else "<source>-<index>"
    problem: str  # statement as given to the model (prompt suffix included)
    answer: str  # reference final answer
    source: str  # dataset the problem came from
    subject: str | None = None  # for the per-subject breakdown
    level: str | None = None  # for the per-level breakdown

    @property
    def fingerprint(self) -> str:
        """Short hash of problem + answer: resuming refuses samples of a different problem."""
        return hashlib.sha256(f"{self.problem}\x00{self.answer}".encode()).hexdigest()[:12]


_BOXED = " Put the final answer in \\boxed{}."
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (
        Benchmark("math", (BenchmarkPart("math", ("math_test5000.jsonl", "math_test.jsonl")),),
                  "math", 2048, description="MATH (Hendrycks) test set, 5000 problems"),
        Benchmark("math500", (BenchmarkPart("math500", ("math500.jsonl",)),),
                  "math", 2048, description="MATH-500 subset of the MATH test set"),
        Benchmark("gsm8k", (BenchmarkPart("gsm8k", ("gsm8k_test.jsonl", "gsm8k.jsonl")),),
                  "number", 1024, description="GSM8K test set, 1319 grade-school word problems"),
        Benchmark("amc", (BenchmarkPart("amc23", ("amc23.jsonl",)),),
                  "number", 4096, description="AMC 2023, 40 problems"),
        Benchmark("aime", (BenchmarkPart("aime24", ("aime24.jsonl",)),
                           BenchmarkPart("aime25", ("aime25.jsonl",))),
                  "integer", 4096, description="AIME 2024 + AIME 2025, 60 problems"),
        Benchmark("aime24", (BenchmarkPart("aime24", ("aime24.jsonl",)),),
                  "integer", 4096, description="AIME 2024, 30 problems"),
        Benchmark("aime25", (BenchmarkPart("aime25", ("aime25.jsonl",)),),
                  "integer", 4096, description="AIME 2025, 30 problems"),
        Benchmark("aimo", (BenchmarkPart("", ("aimo3_reference.csv", "reference.csv")),),
                  "aimo", 8192,
                  prompt_suffix=" The answer is an integer between 0 and 99999.",
                  description="AIMO3 reference problems (Kaggle reference.csv)"),
    )
}
ALIASES = {"amc23": "amc", "math_test": "math", "aimo3": "aimo"}


def is_local_path(name: str) -> bool:
    return name.lower().endswith(_LOCAL_SUFFIXES) or os.sep in name or Path(name).exists()


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for `name`, or a generic maths benchmark for a local file path."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in BENCHMARKS:
        return BENCHMARKS[key]
    if is_local_path(name):
        return Benchmark(Path(name).stem, (BenchmarkPart(name, ()),), "math", 2048,
                         description=f"local file {name}")
    raise ConfigError(f"--benchmark must be one of {sorted(BENCHMARKS)} or a path to a "
                      f".jsonl/.csv/.parquet file; got {name!r}")


def data_dir_from_env(data_dir: str | None) -> Path | None:
    d = data_dir or os.environ.get("AIMO3_DATA_DIR")
    return Path(d).expanduser() if d else None


def part_location(part: BenchmarkPart, data_dir: Path | None) -> str:
    """What load_math_dataset is given for this part: a local file if one exists, else the
    registry/hub name."""
    if data_dir is not None:
        for fname in part.local_files:
            if (data_dir / fname).is_file():
                return str(data_dir / fname)
    if not part.source:
        looked = f" in {data_dir}" if data_dir else ""
        raise DatasetError(
            f"no local copy found{looked} (looked for {list(part.local_files)}). Download "
            f"Kaggle's AIMO3 reference.csv and pass --data-file reference.csv, or put it in "
            f"--data-dir / $AIMO3_DATA_DIR")
    return part.source


def _label(value: object, prefix: str = "") -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{prefix}{int(value)}"
    return str(value).strip()


def load_problems(benchmark: Benchmark, *, data_file: str | None = None,
                  data_dir: str | None = None, max_problems: int | None = None) -> list[EvalProblem]:
    """Load the benchmark's problems in their fixed order (first `max_problems` of them)."""
    from aimo3_recipe.data.datasets import load_math_dataset

    if data_file is not None and not Path(data_file).is_file():
        raise DatasetError(f"--data-file {data_file} does not exist")
    folder = data_dir_from_env(data_dir)
    if folder is not None and not folder.is_dir():
        raise DatasetError(f"data folder {folder} (--data-dir / $AIMO3_DATA_DIR) does not exist")
    locations = ([data_file] if data_file else
                 [part_location(p, folder) for p in benchmark.parts])
    problems: list[EvalProblem] = []
    for loc in locations:
        remaining = None if max_problems is None else max_problems - len(problems)
        if remaining is not None and remaining <= 0:
            break
        try:
            records = load_math_dataset(loc, max_samples=remaining)
        except DatasetError as e:
            if is_local_path(loc):
                raise
            raise DatasetError(
                f"benchmark {benchmark.name!r}: could not load {loc!r} from the hub ({e}). "
                f"Without hub access point it at a local copy: --data-dir DIR (holding "
                f"{[f for p in benchmark.parts for f in p.local_files]}) or --data-file FILE"
            ) from e
        for r in records:
            i = len(problems)
            meta = r.metadata or {}
            rid = meta.get("id", meta.get("unique_id", meta.get("idx")))
            problems.append(EvalProblem(
                index=i, id=str(rid) if rid is not None else f"{Path(str(r.source)).stem}-{i}",
                problem=r.problem + benchmark.prompt_suffix, answer=str(r.answer),
                source=str(r.source), subject=_label(meta.get("subject") or meta.get("type")),
                level=_label(meta.get("level"), "Level ")))
    if not problems:
        raise DatasetError(f"benchmark {benchmark.name!r} has no problems at {locations}")
    return problems
