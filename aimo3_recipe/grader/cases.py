"""The labelled grader cases (tests/data/grader_*.jsonl) and how one is graded.

One JSON object a line: `source`, `type` (our answer type), `mode` / `ref_mode` ("answer", or
"completion" = raw model text to extract the answer from), `pred`, `ref`, `problem` (may be
null), `aimo`, `expected` (our verdict), `source_expected` (the source's label) and `note` (why,
where they differ). Shared by the tests and `bench/bench_verifier.py`, so neither imports the
other.
"""

from __future__ import annotations

import json
from pathlib import Path

from aimo3_recipe.grader.extraction import extract_answer
from aimo3_recipe.grader.grading import verify_answer

__all__ = ["grade_case", "load_cases"]


def load_cases(path: str | Path) -> list[dict]:
    """The cases of one file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def grade_case(case: dict) -> bool:
    """Our verdict on one case (extracting first where a side is a completion)."""
    pred = extract_answer(case["pred"]) if case["mode"] == "completion" else case["pred"]
    ref = extract_answer(case["ref"]) if case["ref_mode"] == "completion" else case["ref"]
    if ref is None:
        return False
    return verify_answer(pred, ref, aimo=case["aimo"], problem=case["problem"])
