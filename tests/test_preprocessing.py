"""Preprocessing: answers, text noise, duplicates and decontamination (hand cases + real data)."""

from __future__ import annotations

import pytest

from aimo3_recipe.data.datasets import load_math_dataset
from aimo3_recipe.data.preprocessing import (
    ContaminationIndex,
    decontaminate,
    dedup_exact,
    dedup_near,
    load_benchmark_problems,
    ngrams,
    normalize_answer,
    normalize_text,
    preprocess,
    problem_key,
    reference_answer,
    tokens,
)
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.synthetic import generate_synthetic
from aimo3_recipe.testing import reword_lightly


def rec(problem: str, answer: str = "1", solution: str = "") -> MathRecord:
    return MathRecord(problem=problem, solution=solution, answer=answer, source="t")


@pytest.mark.parametrize("solution,answer,expected", [
    ("x \\boxed{5} then \\boxed{7}", None, "7"),
    ("3 + 4 = 7\n#### 7", None, "7"),
    ("work", "#### 12", "12"),
    ("\\boxed{5}", "6", "6"),  # an answer field wins over the solution
    ("no answer", None, None),
    ("", "  ", None),
])
def test_extract_answer(solution, answer, expected):
    assert reference_answer(solution, answer) == expected


@pytest.mark.parametrize("raw,expected", [
    ("025", "25"), ("27.0", "27"), ("-0.50", "-0.5"), ("1,000", "1000"), ("00", "0"),
    ("$5$", "5"), (" \\dfrac{1}{2} ", "\\frac{1}{2}"), ("(1,2)", "(1,2)"),
    ("3\\!\\sqrt{2}", "3\\sqrt{2}"), ("-0", "0"), ("\\text{(B)}", "\\text{(B)}")])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_text_keeps_code_blocks():
    text = ("Find  the\u00a0value\t of $\\tfrac{1}{2}$.\n\n\n\nNext line  \n"
            "```python\nfor i in range(2):\n    print(i)  # two  spaces\n```\n  end ")
    assert normalize_text(text) == (
        "Find the value of $\\frac{1}{2}$.\n\nNext line\n"
        "```python\nfor i in range(2):\n    print(i)  # two  spaces\n```\nend")


def test_tokens_and_short_ngrams():
    assert tokens("Compute $\\dbinom{16}{5}$!") == ["compute", "\\dbinom", "{", "16", "}", "{",
                                                    "5", "}", "!"]
    assert ngrams(["a", "b"], 3) == {("a", "b")}
    assert ngrams(["a", "b", "c"], 2) == {("a", "b"), ("b", "c")}


def test_exact_dedup_ignores_spacing_and_punctuation():
    rows = [rec("What is  $2+3$?"), rec("what is 2 + 3"), rec("What is $2+4$?")]
    kept, removed = dedup_exact(rows)
    assert removed == 1 and [r.problem for r in kept] == ["What is  $2+3$?", "What is $2+4$?"]
    assert problem_key("A, b.") == problem_key("a  B")


def test_near_dedup_catches_one_word_changes_only():
    base = ("A rectangular garden is twice as long as it is wide and its perimeter is 60 "
            "meters. A path one meter wide runs around the outside of the garden. What is the "
            "area of the path in square meters?")
    rows = [rec(base), rec(base.replace("garden is", "yard is")),
            rec("Two trains leave the same station at noon, one heading north at 40 miles per "
                "hour and the other heading east at 30 miles per hour. How far apart are they "
                "after three hours?")]
    kept, removed = dedup_near(rows)
    assert removed == 1 and kept == [rows[0], rows[2]]


def test_contamination_requires_the_same_numbers():
    bench = [("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. "
             "Enter your answer in the form $(r,\\theta),$ where $r > 0$.")]
    index = ContaminationIndex()
    index.add("math500", bench)
    assert index.match("Please convert the point $(0, 3)$ in rectangular coordinates to polar "
                       "coordinates. Enter your answer in the form $(r,\\theta),$ where $r > 0$.")
    # same template, other numbers: a different problem
    assert index.match(bench[0].replace("(0,3)", "(6,2)")) is None
    assert index.match("Something else entirely about triangles.") is None


def test_preprocess_removes_reworded_math500_and_reports_it(shared_data):
    math500 = load_math_dataset("math500", data_dir=shared_data)
    seeded = [m for m in math500 if len(tokens(m.problem)) >= 25][:5]
    assert len(seeded) == 5
    gsm_train = load_math_dataset("gsm8k", split="train", data_dir=shared_data, max_samples=300)
    train = (generate_synthetic(300, seed=4) + gsm_train
             + [rec(reword_lightly(m.problem), m.answer, m.solution) for m in seeded]
             + [rec("A problem without any answer at all.", "", "no box")]
             + [rec(gsm_train[0].problem + "  ", gsm_train[0].answer)])  # an exact duplicate
    benchmarks = load_benchmark_problems(["math500", "gsm8k", "aime24", "amc23"],
                                         data_dir=shared_data)
    assert set(benchmarks) == {"math500", "gsm8k", "aime24", "amc23"}
    kept, report = preprocess(train, benchmarks=benchmarks)
    assert report.contaminated == {"math500": 5, "gsm8k": 0, "aime24": 0, "amc23": 0}
    assert report.no_answer == 1 and report.exact_duplicates == 1
    assert report.input_rows == len(train)
    assert report.output_rows == len(kept) == (len(train) - 1 - 1 - report.near_duplicates - 5)
    assert "math500: 5" in report.summary()
    kept_keys = {problem_key(r.problem) for r in kept}
    assert not any(problem_key(reword_lightly(m.problem)) in kept_keys for m in seeded)
    assert all(r.answer for r in kept)


def test_decontaminating_math_test_against_math500_finds_all_500(shared_data):
    """MATH-500 is a subset of MATH test: every one of its 500 problems must be caught, and
    few others (the extras are MATH's template siblings with identical numbers)."""
    math_test = load_math_dataset("math", data_dir=shared_data)
    bench = load_benchmark_problems(["math500"], data_dir=shared_data)
    kept, removed = decontaminate(math_test, bench)
    assert 500 <= removed["math500"] <= 540
    kept_keys = {problem_key(r.problem) for r in kept}
    assert not any(problem_key(p) in kept_keys for p in bench["math500"])
