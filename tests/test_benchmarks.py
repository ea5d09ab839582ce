"""The benchmark registry on the shared benchmark files (read in place) and local files."""

from __future__ import annotations

import json

import pytest

from aimo3_recipe.evaluation.benchmarks import BENCHMARKS, get_benchmark, load_problems
from aimo3_recipe.exceptions import ConfigError, DatasetError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # no hub here: a registry name without a local copy must fail fast with advice
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("AIMO3_DATA_DIR", raising=False)


def test_registry_names_aliases_and_paths(tmp_path):
    assert set(BENCHMARKS) == {"math", "math500", "gsm8k", "amc", "aime", "aime24", "aime25", "aimo"}
    assert get_benchmark("AMC23") is BENCHMARKS["amc"]
    assert [p.source for p in get_benchmark("aime").parts] == ["aime24", "aime25"]
    assert get_benchmark("aimo").aimo and not get_benchmark("math500").aimo
    assert get_benchmark("aime24").answer_type == "integer"
    assert all(b.max_tokens > 0 and b.mode in ("cot", "tir") for b in BENCHMARKS.values())
    local = get_benchmark(str(tmp_path / "mine.jsonl"))
    assert local.name == "mine" and local.parts[0].source.endswith("mine.jsonl")
    with pytest.raises(ConfigError, match="math500"):
        get_benchmark("mathh500")


@pytest.mark.parametrize("name,count", [("math500", 500), ("aime24", 30), ("amc", 40),
                                        ("gsm8k", 1319)])
def test_shared_files_through_the_registry(shared_data, name, count):
    problems = load_problems(get_benchmark(name), data_dir=str(shared_data))
    assert len(problems) == count
    assert [p.index for p in problems] == list(range(count))
    assert all(p.problem.strip() and p.answer.strip() for p in problems)
    if name == "aime24":
        assert all(p.answer.isdigit() and 0 <= int(p.answer) <= 999 for p in problems)
    if name == "math500":
        assert {p.level for p in problems} == {f"Level {i}" for i in range(1, 6)}
        assert len({p.subject for p in problems}) == 7
    if name == "gsm8k":  # the "#### N" answer, not the worked solution
        assert problems[0].answer == "18"


def test_math_test_set_subjects_from_type_and_max_problems(shared_data):
    problems = load_problems(get_benchmark("math"), data_dir=str(shared_data), max_problems=20)
    assert len(problems) == 20
    assert problems[0].answer == "2"  # last \boxed{} of the first solution
    assert problems[0].subject == "Algebra" and problems[0].level == "Level 3"


def test_data_dir_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv("AIMO3_DATA_DIR", str(shared_data))
    assert len(load_problems(get_benchmark("aime24"), max_problems=5)) == 5


def test_missing_part_says_where_it_looked(shared_data):
    # shared/data has AIME 2024 but not 2025; without the hub the error names the fix
    with pytest.raises(DatasetError, match="aime25.jsonl"):
        load_problems(get_benchmark("aime"), data_dir=str(shared_data))
    with pytest.raises(DatasetError, match="does not exist"):
        load_problems(get_benchmark("math500"), data_file="/nonexistent/file.jsonl")


def test_aimo_reads_a_kaggle_style_csv_and_appends_the_range(tmp_path):
    csv = tmp_path / "reference.csv"
    csv.write_text('id,problem,answer\n'
                   'a1,"Find the remainder when $2^{20}$ is divided by $1000$.",576\n'
                   'b2,What is $3 \\cdot 4$?,12\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (None, str(empty)):
        with pytest.raises(DatasetError, match="reference.csv"):
            load_problems(get_benchmark("aimo"), data_dir=folder)
    problems = load_problems(get_benchmark("aimo"), data_file=str(csv))
    assert [p.id for p in problems] == ["a1", "b2"]
    assert [p.answer for p in problems] == ["576", "12"]
    assert problems[0].problem.endswith("between 0 and 99999.")
    by_dir = load_problems(get_benchmark("aimo"), data_dir=str(tmp_path))
    assert [p.fingerprint for p in by_dir] == [p.fingerprint for p in problems]


def test_local_file_benchmark_keeps_order_and_fingerprints(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps({"problem": f"p{i}", "answer": str(i)}) + "\n"
                            for i in range(4)))
    a = load_problems(get_benchmark(str(path)))
    b = load_problems(get_benchmark(str(path)), max_problems=2)
    assert [p.problem for p in a] == ["p0", "p1", "p2", "p3"]
    assert [p.fingerprint for p in b] == [p.fingerprint for p in a[:2]]
    assert len({p.fingerprint for p in a}) == 4
