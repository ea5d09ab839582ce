"""Dataset loading: the registry on ../shared/data files, local formats, malformed rows, hub."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from aimo3_recipe.data.datasets import (
    DATASETS,
    MathRecord,
    load_math_dataset,
    load_math_dataset_with_report,
    row_to_record,
)
from aimo3_recipe.exceptions import DatasetError
from aimo3_recipe.utils.math_utils import last_boxed

AIMO_CSV = Path(__file__).parent / "data" / "aimo3_reference.csv"
INT_RE = re.compile(r"-?(0|[1-9]\d*)")


def test_registry_names_cover_the_recipe():
    assert {"numina_cot", "numina_tir", "openmath_cot", "openmath_tir", "openmath_genselect",
            "math", "math500", "gsm8k", "aime24", "aime25", "amc23", "synthetic"} <= set(DATASETS)
    assert DATASETS["numina_cot"].hub_id == "AI-MO/NuminaMath-CoT"
    assert DATASETS["openmath_tir"].hub_id == "nvidia/OpenMathReasoning"
    assert DATASETS["openmath_tir"].split == "tir" and DATASETS["openmath_cot"].streaming


@pytest.mark.parametrize("name,split,count", [
    ("math500", None, 500), ("gsm8k", None, 1319), ("gsm8k", "train", 7473),
    ("aime24", None, 30), ("amc23", None, 40), ("math", None, 5000), ("math", "train", 7498)])
def test_shared_files_through_the_registry(shared_data, name, split, count):
    records, report = load_math_dataset_with_report(name, split=split, data_dir=shared_data)
    assert len(records) == count == report.kept
    assert all(isinstance(r, MathRecord) and r.problem and r.answer for r in records)
    assert all(r.source == name for r in records)


def test_math500_fields(shared_data):
    recs = load_math_dataset(str(shared_data / "math500.jsonl"))
    assert len(recs) == 500 and all(r.answer.strip() for r in recs)
    first = recs[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata == {"id": "test/precalculus/807.json", "subject": "Precalculus",
                              "level": 2}
    assert {r.metadata["level"] for r in recs} == {1, 2, 3, 4, 5}


def test_gsm8k_answers_and_solutions(shared_data):
    recs = load_math_dataset(str(shared_data / "gsm8k_test.jsonl"))
    assert len(recs) == 1319
    assert all(INT_RE.fullmatch(r.answer) for r in recs), [r.answer for r in recs
                                                          if not INT_RE.fullmatch(r.answer)]
    assert recs[0].answer == "18"
    # worked solution in our format: calculator notes gone, final answer boxed
    assert "<<" not in recs[0].solution and last_boxed(recs[0].solution) == "18"
    assert all(last_boxed(r.solution) == r.answer for r in recs)


def test_aime_and_amc_answers_are_clean_integers(shared_data):
    aime = load_math_dataset(str(shared_data / "aime24.jsonl"))
    assert len(aime) == 30
    assert all(INT_RE.fullmatch(r.answer) and 0 <= int(r.answer) <= 999 for r in aime)
    raw = [json.loads(line)["answer"] for line in (shared_data / "aime24.jsonl").open()]
    assert [int(a) for a in raw] == [int(r.answer) for r in aime]  # "025" -> "25", same value
    amc = load_math_dataset(str(shared_data / "amc23.jsonl"))
    assert len(amc) == 40 and amc[0].answer == "27"
    assert not any(r.answer.endswith(".0") for r in amc)


def test_math_test5000_answer_is_last_box(shared_data):
    recs = load_math_dataset(str(shared_data / "math_test5000.jsonl"))
    assert len(recs) == 5000 and recs[0].answer == "2"
    assert recs[0].metadata["subject"] == "Algebra" and recs[0].metadata["level"] == 3


def test_math_train_drops_two_empty_answers_with_one_warning(shared_data, caplog):
    with caplog.at_level(logging.WARNING):
        recs, report = load_math_dataset_with_report(
            str(shared_data / "math_train7500_answers_only.jsonl"))
    assert len(recs) == 7498 and report.rows_read == 7500
    assert report.skipped == {"no usable answer": 2}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "skipped 2" in caplog.text


def test_max_samples_keeps_the_first_rows(shared_data):
    full = load_math_dataset("math500", data_dir=shared_data)
    first = load_math_dataset("math500", data_dir=shared_data, max_samples=7)
    assert [r.problem for r in first] == [r.problem for r in full[:7]]
    assert load_math_dataset("math500", data_dir=shared_data, max_samples=0) == []


def test_malformed_rows_are_skipped_counted_and_warned_once(tmp_path, caplog):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"problem": "What is 1+1?", "answer": "2"}),
        '{"problem": "broken json',
        json.dumps({"question": "", "answer": "3"}),
        json.dumps({"problem": "No answer here", "solution": "I do not know."}),
        json.dumps({"problem": "Empty answer", "answer": "  "}),
        json.dumps(["not", "an", "object"]),
        "",
        json.dumps({"problem": "Boxed only", "solution": "so \\boxed{\\dfrac{1}{2}}"}),
    ]) + "\n")
    with caplog.at_level(logging.WARNING):
        recs, report = load_math_dataset_with_report(str(path))
    assert [r.answer for r in recs] == ["2", "\\frac{1}{2}"]
    assert report.rows_read == 7 and report.num_skipped == 5
    assert report.skipped == {"broken row (not a JSON object)": 2, "missing problem": 1,
                              "no usable answer": 2}
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_aimo_csv_with_and_without_answers(tmp_path):
    recs = load_math_dataset(str(AIMO_CSV))
    assert len(recs) == 8 and recs[0].metadata["id"] == "a1f3c2" and recs[0].answer == "376"
    assert all(INT_RE.fullmatch(r.answer) for r in recs)
    assert "\nGive the exact count." in recs[4].problem  # quoted multi-line field survives
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,problem\nx1,What is $2+2$?\n")
    assert load_math_dataset(str(test_csv)) == []  # by default rows need an answer
    recs = load_math_dataset(str(test_csv), require_answer=False)
    assert recs[0].answer == "" and recs[0].problem == "What is $2+2$?"


def test_parquet_and_json_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": f"p{i}", "solution": f"s \\boxed{{{i}}}", "level": "Level 4"}
            for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    recs = load_math_dataset(str(tmp_path / "x.parquet"), max_samples=3)
    assert [r.answer for r in recs] == ["0", "1", "2"] and recs[0].metadata["level"] == 4
    (tmp_path / "y.json").write_text(json.dumps(rows))
    assert len(load_math_dataset(str(tmp_path / "y.json"))) == 5


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="math500"):
        load_math_dataset("no_such_set")
    with pytest.raises(DatasetError, match="does not exist"):
        load_math_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DatasetError, match="path"):
        load_math_dataset("aimo")


def test_synthetic_through_the_registry():
    recs = load_math_dataset("synthetic", max_samples=5)
    assert len(recs) == 5 and all(r.metadata["tir_solution"] for r in recs)


def test_hub_loading_streams_and_stops_at_max_samples(monkeypatch):
    import datasets

    calls, served = [], []

    def fake_load_dataset(hub_id, config=None, *, split, streaming):
        calls.append((hub_id, config, split, streaming))

        def rows():
            for i in range(1000):
                served.append(i)
                yield {"problem": f"P{i}", "generated_solution":
                       f"<tool_call>\n```python\nprint({i})\n```\n</tool_call>\n```output\n{i}\n"
                       f"```\nso \\boxed{{{i}}}", "expected_answer": str(i),
                       "problem_source": "aops"}
        return rows()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    recs = load_math_dataset("openmath_tir", max_samples=3)
    assert calls == [("nvidia/OpenMathReasoning", None, "tir", True)]
    assert len(recs) == 3 and len(served) <= 4  # streamed, not read to the end
    assert "<tool_call>" not in recs[0].solution
    assert recs[0].metadata["tir_solution"].startswith("```python\nprint(0)\n```\n```output")
    assert recs[1].answer == "1" and recs[0].source == "openmath_tir"

    load_math_dataset("math", split="train", max_samples=1)
    assert calls[-1] == ("EleutherAI/hendrycks_math", "algebra", "train", False)


def test_hub_failure_suggests_a_local_path(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetError, match="local .jsonl"):
        load_math_dataset("math500")
    with pytest.raises(DatasetError, match="someone/their-set"):
        load_math_dataset("someone/their-set")


def test_row_to_record_hand_cases():
    rec, why = row_to_record({"question": "Q", "answer": "Work <<2*3=6>>6\n#### 1,200"}, "g")
    assert why is None and rec.answer == "1200"
    assert rec.solution == "Work 6\nThe answer is \\boxed{1200}."
    rec, _ = row_to_record({"problem": "P", "answer": 27.0, "level": "Level ?"}, "amc")
    assert rec.answer == "27" and "level" not in rec.metadata
    assert row_to_record({"problem": "P"}, "x") == (None, "no usable answer")
