"""Strategies end to end: scripted engines pin the selection logic down exactly; the tiny random
model runs every strategy through the real transformers engine and the CLI; the slow tier
answers a problem with each strategy on the embedded default."""

from __future__ import annotations

import json
import math

import pytest

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.generate import (
    STRATEGIES,
    GenerationConfig,
    MathGenerator,
    cli,
)
from aimo3_recipe.inference.solution_selection import majority_vote, weighted_vote
from aimo3_recipe.testing import ReplyEngine

ScriptedEngine = ReplyEngine


def gen(engine, **kw) -> MathGenerator:
    return MathGenerator(GenerationConfig(**kw), engine=engine)


def test_config_validation():
    with pytest.raises(ConfigError, match="strategy"):
        GenerationConfig(strategy="best_of_n")
    with pytest.raises(ConfigError, match="num_samples"):
        GenerationConfig(num_samples=0)


def test_majority_and_weighted_disagree_where_they_should(tiny_tokenizer):
    # samples 0,1 say 10 with low confidence; sample 2 says 12 with high confidence
    script = {0: ("so \\boxed{10}", math.log(0.2)), 1: ("thus \\boxed{10}", math.log(0.25)),
              2: ("hence \\boxed{12}", math.log(0.9))}
    eng = ScriptedEngine(tiny_tokenizer, lambda p, j, c: script[j])
    maj = gen(eng, strategy="majority_vote", num_samples=3).solve("x?")
    wtd = gen(eng, strategy="weighted_vote", num_samples=3).solve("x?")
    assert maj.answer == "10" and maj.votes == {"10": 2.0, "12": 1.0}
    assert wtd.answer == "12"
    assert wtd.votes["12"] == pytest.approx(0.9) and wtd.votes["10"] == pytest.approx(0.45)
    assert [c.weight for c in wtd.candidates] == pytest.approx([0.2, 0.25, 0.9])
    assert wtd.tokens_generated == sum(c.num_tokens for c in wtd.candidates) > 0


def test_early_stop_after_k_agree(tiny_tokenizer):
    eng = ScriptedEngine(tiny_tokenizer, lambda p, j, c: ("\\boxed{5}", -0.1))
    r = gen(eng, strategy="majority_vote", num_samples=8, early_stop_k=3,
            sample_chunk=2).solve("x?")
    # chunks of 2: after 2 samples only 2 agree, after 4 samples 4 >= 3 agree -> stop
    assert r.early_stopped and r.samples_drawn == 4 and r.answer == "5"
    assert eng.requested == [(1, 2), (1, 2)]
    eng2 = ScriptedEngine(tiny_tokenizer, lambda p, j, c: ("\\boxed{5}", -0.1))
    r2 = gen(eng2, strategy="majority_vote", num_samples=8).solve("x?")
    assert not r2.early_stopped and r2.samples_drawn == 8 and eng2.requested == [(1, 8)]


def test_early_stop_per_problem_in_a_batch(tiny_tokenizer):
    # problem A always answers 1; problem B answers its sample index (never agrees)
    def reply(p, j, c):
        return ("\\boxed{1}", -0.1) if "AAA" in p else (f"\\boxed{{{10 * c + j}}}", -0.1)

    eng = ScriptedEngine(tiny_tokenizer, reply)
    a, b = gen(eng, strategy="majority_vote", num_samples=6, early_stop_k=2,
               sample_chunk=2).solve_batch(["AAA", "BBB"])
    assert a.early_stopped and a.samples_drawn == 2
    assert not b.early_stopped and b.samples_drawn == 6
    assert eng.requested == [(2, 2), (1, 2), (1, 2)]  # A left the batch after round one
    assert b.tie and b.answer == "0" and len(b.tied) == 6  # all different: first seen wins


def test_no_answers_gives_none(tiny_tokenizer):
    eng = ScriptedEngine(tiny_tokenizer, lambda p, j, c: ("I do not know", -1.0))
    r = gen(eng, strategy="majority_vote", num_samples=3).solve("x?")
    assert r.answer is None and r.votes == {} and r.samples_drawn == 3


def _genselect_engine(tokenizer, judge_text):
    answers = ["7", "9", "9", "11"]

    def reply(p, j, c):
        if "candidate solutions" in p:  # the judge prompt
            return judge_text, -0.5
        return f"work {j} \\boxed{{{answers[j]}}}", -0.5

    return ScriptedEngine(tokenizer, reply)


def test_genselect_follows_the_judge(tiny_tokenizer):
    # distinct answers 7, 9, 11 -> one window of three; the judge names index 2 (answer 11)
    eng = _genselect_engine(tiny_tokenizer, "Solution 2 is right.\nJudgment: 2")
    r = gen(eng, strategy="genselect", num_samples=4, genselect_window=4).solve("x?")
    assert r.answer == "11"  # not the majority (9)
    assert r.selection["reason"] == "tournament" and r.selection["fallbacks"] == 0
    assert r.selection["judgments"][0]["shown"] == [0, 1, 3]  # one representative per answer
    assert not r.selection["fell_back_to_majority"]
    assert r.tokens_generated > sum(c.num_tokens for c in r.candidates)  # judge tokens counted


def test_genselect_tournament_over_windows(tiny_tokenizer):
    eng = _genselect_engine(tiny_tokenizer, "Judgment: 1")
    r = gen(eng, strategy="genselect", num_samples=4, genselect_window=2).solve("x?")
    # windows of 2 over [0,1,3] -> one window of three (no window of one); picks index 1
    assert r.selection["rounds"] == 1 and r.answer == "9"
    assert eng.calls == 2  # sampling + one judge round


def test_genselect_unusable_output_falls_back_to_majority(tiny_tokenizer):
    eng = _genselect_engine(tiny_tokenizer, "no idea which one")
    r = gen(eng, strategy="genselect", num_samples=4).solve("x?")
    assert r.answer == "9" and r.selection["fell_back_to_majority"]
    assert r.selection["fallbacks"] == 1


def test_genselect_unanimous_skips_the_judge(tiny_tokenizer):
    eng = ScriptedEngine(tiny_tokenizer, lambda p, j, c: ("\\boxed{3}", -0.2))
    r = gen(eng, strategy="genselect", num_samples=3).solve("x?")
    assert r.answer == "3" and r.selection["reason"] == "unanimous" and eng.calls == 1


def test_tir_runs_code_and_votes(tiny_tokenizer):
    """SC-TIR with a scripted model: it writes code, the sandbox prints 42, it boxes it."""
    def reply(p, j, c):
        transcript = p.split("<|im_start|>assistant\n", 1)[1]  # the system prompt names ```output
        if "```output" in transcript:
            out = transcript.rsplit("```output", 1)[1]
            return f"The result is \\boxed{{{out.strip().strip('`').strip()}}}", -0.1
        return "Compute:\n```python\nprint(6 * 7)\n```\n", -0.1

    eng = ScriptedEngine(tiny_tokenizer, reply)
    r = gen(eng, strategy="tir", num_samples=2, max_new_tokens=64).solve("What is 6*7?")
    assert r.answer == "42", [c.text for c in r.candidates]
    assert all(c.tool_calls == 1 for c in r.candidates)
    assert "```output" in r.candidates[0].text


# -- the real transformers engine on a tiny random model ----------------------------------
@pytest.fixture(scope="module")
def tiny_engine(tiny_tokenizer):
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.testing import make_tiny_model

    return HFEngine(make_tiny_model(tiny_tokenizer), tiny_tokenizer)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_on_tiny_model(tiny_engine, strategy):
    g = gen(tiny_engine, strategy=strategy, num_samples=3, max_new_tokens=12,
            genselect_max_tokens=8, genselect_max_chars=400, max_tool_calls=1)
    r1, r2 = g.solve_batch(["What is 12 + 35?", "Solve 3x + 5 = 20."])
    for r in (r1, r2):
        n = 1 if strategy == "greedy" else 3
        assert r.strategy == strategy and r.samples_drawn == len(r.candidates) == n
        assert all(0 < c.num_tokens <= 12 for c in r.candidates)
        assert r.tokens_generated >= sum(c.num_tokens for c in r.candidates)
        assert r.time_s > 0
        answers = r.answers
        if strategy == "weighted_vote":
            assert r.answer == weighted_vote(answers, [c.weight for c in r.candidates]).answer
            assert all(0 < c.weight <= 1 for c in r.candidates)
        elif strategy != "genselect" or r.selection.get("fell_back_to_majority"):
            assert r.answer == majority_vote(answers).answer
        else:
            assert r.answer in answers
    json.dumps(r1.to_dict())  # the result is JSON-serialisable evidence


def test_cli_json_on_tiny_model_folder(tiny_model_dir, capsys):
    rc = cli(["--model", str(tiny_model_dir), "--strategy", "majority_vote", "--num-samples",
              "2", "--max-new-tokens", "6", "--problem", "What is 2 + 2?", "--json",
              "--use-vllm", "false"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "majority_vote" and out["samples_drawn"] == 2
    assert len(out["candidates"]) == 2


def test_cli_bad_strategy_is_a_clear_error(capsys):
    assert cli(["--strategy", "best_of", "--problem", "1+1?"]) == 2
    assert "strategy must be one of" in capsys.readouterr().err


def test_aimo3_generate_console_command_forwards(tiny_model_dir, capsys):
    from aimo3_recipe.cli import main

    assert main(["generate", "--model", str(tiny_model_dir), "--strategy", "greedy",
                 "--max-new-tokens", "4", "--problem", "1+1?", "--use-vllm", "false"]) == 0
    assert "strategy: greedy" in capsys.readouterr().out


# -- slow: the embedded default, every strategy through the CLI --------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cli_each_strategy_on_embedded_default(embedded_model_dir, strategy, capsys):
    rc = cli(["--model", "default", "--strategy", strategy, "--num-samples", "2",
              "--max-new-tokens", "40", "--genselect-max-tokens", "16", "--max-tool-calls", "1",
              "--genselect-max-chars", "600", "--use-vllm", "false",
              "--problem", "What is 12 + 35? Put the answer in \\boxed{}.", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == strategy
    assert out["samples_drawn"] == (1 if strategy == "greedy" else 2)
    assert out["tokens_generated"] > 0
    # a real 135M model writes text, not nothing
    assert all(len(c["text"].strip()) > 0 for c in out["candidates"])
