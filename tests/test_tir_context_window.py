"""A TIR rollout that reaches the engine's context window ends as truncated ("length"),
keeping its text, ids and log-probs, instead of being resubmitted with a prompt as long as
the window (which vLLM rejects with VLLMValidationError: issue 23, item 1).

Three engines: a scripted one that enforces a window exactly as vLLM does (both TIR loops,
every path: a turn cut by the window, a tool output that overflows it, a prompt that fills
it), the transformers engine on a tiny random model whose position limit is the window, and
vLLM itself on a tiny random model with max_model_len 512 and max_tokens 2000 (the issue's
reproduction; marker `vllm`)."""

from __future__ import annotations

import pytest

from aimo3_recipe.exceptions import ContextWindowError
from aimo3_recipe.inference.engine import SamplingConfig
from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir
from aimo3_recipe.testing import (
    ScriptedTIREngine,
    StreamingScriptedTIREngine,
    make_tiny_model,
    save_tiny_model,
)
from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(size=2, config=SandboxConfig(timeout_s=5.0)) as p:
        yield p


@pytest.fixture(params=["rounds", "streaming"])
def Scripted(request):
    return ScriptedTIREngine if request.param == "rounds" else StreamingScriptedTIREngine


def _assert_truncated_at_window(r, window):
    assert r.finish_reason == "length"
    assert len(r.prompt_ids) + len(r.token_ids) == window
    assert len(r.token_ids) == len(r.mask) == len(r.logprobs)
    assert "".join(t for t, _ in r.segments) == r.text


# ---------------------------------------------------------------- scripted: every path
def test_turn_cut_by_the_window_ends_as_length(pool, Scripted):
    """Window 40, budget 2000: the first turn ends at the window with budget left; before the
    fix the loop resubmitted prompt + 39 tokens and the engine raised."""
    engine = Scripted({"P": ["x" * 500]}, max_model_len=40)
    (r,), = run_tir(engine, ["P"], SamplingConfig(max_tokens=2000), TIRConfig(), pool=pool)
    _assert_truncated_at_window(r, 40)
    assert r.text == "x" * 39 and len(engine.calls) == 1


def test_each_turn_asks_at_most_what_the_window_leaves(pool, Scripted):
    code = "```python\nprint(6 * 7)\n```\n"
    engine = Scripted({"P": [code, "y" * 500]}, max_model_len=80)
    (r,), = run_tir(engine, ["P"], SamplingConfig(max_tokens=2000), TIRConfig(), pool=pool)
    _assert_truncated_at_window(r, 80)
    assert r.num_code_calls == 1 and "```output\n42\n```\n" in r.text
    asked = [cfg.max_tokens for (texts, cfg) in engine.calls]
    prompts = [len(texts[0]) for (texts, cfg) in engine.calls]
    assert asked == [79, 80 - prompts[1]]  # never more than the window leaves


def test_tool_output_that_overflows_the_window_ends_the_rollout(pool, Scripted):
    code = "```python\nprint('z' * 60)\n```\n"
    engine = Scripted({"P": [code, "never asked"]}, max_model_len=len("P" + code) + 20)
    (r,), = run_tir(engine, ["P"], SamplingConfig(max_tokens=2000), TIRConfig(), pool=pool)
    assert r.finish_reason == "length" and r.num_code_calls == 1
    assert r.segments[-1][1] == "tool" and len(engine.calls) == 1  # not resubmitted
    assert len(r.token_ids) == len(r.mask) == len(r.logprobs)


def test_prompt_that_fills_the_window_ends_before_its_first_turn(pool, Scripted):
    engine = Scripted({"LONG": ["a"], "P": ["\\boxed{1}"]}, max_model_len=4)
    long_r, short_r = run_tir(engine, ["LONG", "P"], SamplingConfig(max_tokens=2000),
                              TIRConfig(), pool=pool)
    assert long_r[0].finish_reason == "length" and long_r[0].token_ids == []
    assert short_r[0].finish_reason == "length" and short_r[0].text == "\\bo"
    assert all(texts != ["LONG"] for texts, _ in engine.calls)


def test_rounds_cap_the_round_at_the_largest_room(pool):
    """One round for rollouts with different rooms: the round asks for the largest room (the
    engine cuts each at its own window), not the smallest, so the others are not slowed."""
    engine = ScriptedTIREngine({"SHORT": ["s" * 200], "A-LONGER-PROMPT": ["l" * 200]},
                               max_model_len=30)
    out = run_tir(engine, ["SHORT", "A-LONGER-PROMPT"], SamplingConfig(max_tokens=2000),
                  TIRConfig(), pool=pool)
    assert [g[0].finish_reason for g in out] == ["length", "length"]
    assert [len(g[0].prompt_ids) + len(g[0].token_ids) for g in out] == [30, 30]
    assert len(engine.calls) == 1 and engine.calls[0][1].max_tokens == 30 - len("SHORT")


# ---------------------------------------------------------------- transformers engine
@pytest.fixture(scope="module")
def hf_window_engine(tiny_tokenizer):
    from aimo3_recipe.inference.hf_engine import HFEngine

    model = make_tiny_model(tiny_tokenizer, max_position_embeddings=96, seed=3)
    model.generation_config.eos_token_id = None  # a random model must not stop early by luck
    model.config.eos_token_id = None
    engine = HFEngine(model, tiny_tokenizer)
    engine.eos_ids = set()
    return engine


def test_hf_engine_takes_its_window_from_the_model_config(hf_window_engine):
    assert hf_window_engine.max_model_len == 96
    (c,), = hf_window_engine.generate_tokens([[5] * 90], SamplingConfig(max_tokens=2000))
    assert c.finish_reason == "length" and len(c.token_ids) == 6
    with pytest.raises(ContextWindowError, match="max_model_len 96"):
        hf_window_engine.generate_tokens([[5] * 96], SamplingConfig(max_tokens=1))


def test_hf_rows_end_at_their_own_window(hf_window_engine):
    out = hf_window_engine.generate_tokens([[5] * 90, [5] * 40], SamplingConfig(max_tokens=2000))
    assert [len(g[0].token_ids) for g in out] == [6, 56]
    assert all(g[0].finish_reason == "length" and len(g[0].logprobs) == len(g[0].token_ids)
               for g in out)


def test_tir_on_hf_engine_ends_at_the_window(pool, hf_window_engine):
    """max_tokens 2000 with a 96-token window: before the fix the rollout sampled 2000 tokens
    past the model's positions."""
    out = run_tir(hf_window_engine, ["What is 2+3?", "Compute 7 * 6, then add 1."],
                  SamplingConfig(n=2, max_tokens=2000, temperature=0.7, seed=1), TIRConfig(),
                  pool=pool)
    for r in (r for g in out for r in g):
        _assert_truncated_at_window(r, 96)


# ---------------------------------------------------------------- vLLM (issue 23 item 1)
@pytest.mark.vllm
@pytest.mark.slow
def test_tir_on_vllm_ends_at_max_model_len(tmp_path_factory, pool):
    """The issue's reproduction: a tiny random model (hidden 256, 4 heads: head size 64; CPU
    vLLM refuses head size 16), max_model_len 512, max_tokens 2000. Before the fix the second
    turn's prompt was 512 tokens long and vLLM raised VLLMValidationError."""
    pytest.importorskip("vllm")
    from aimo3_recipe.inference.vllm_engine import VLLMEngine

    path = save_tiny_model(tmp_path_factory.mktemp("tiny256"), hidden_size=256, num_heads=4)
    engine = VLLMEngine(path, seed=0, max_model_len=512, enforce_eager=True)
    try:
        assert engine.max_model_len == 512
        out = run_tir(engine, ["What is 2+3?"] * 2, SamplingConfig(n=2, max_tokens=2000,
                                                                   temperature=1.0),
                      TIRConfig(), pool=pool)
    finally:
        engine.close()
    results = [r for g in out for r in g]
    assert len(results) == 4
    for r in results:  # a random model may sample EOS: then it stopped inside the window
        assert len(r.prompt_ids) + len(r.token_ids) <= 512
        assert len(r.token_ids) == len(r.mask) == len(r.logprobs)
        if r.finish_reason != "stop":
            _assert_truncated_at_window(r, 512)
    assert any(r.finish_reason == "length" for r in results)
