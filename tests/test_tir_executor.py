"""TIR executor: pure helpers on hand-written strings, then the loop against a scripted engine
(every branch, deterministic) and a tiny random transformers model (end to end)."""

from __future__ import annotations

import pytest

from aimo3_recipe.inference.engine import SamplingConfig
from aimo3_recipe.inference.tir_executor import (
    TIRConfig,
    cut_at_markers,
    find_pending_code,
    format_tool_output,
    run_tir,
)
from aimo3_recipe.testing import ScriptedTIREngine, StreamingScriptedTIREngine
from aimo3_recipe.utils.code_execution import ExecResult, SandboxConfig, SandboxPool


# ---------------------------------------------------------------- pure helpers
def test_find_pending_code_closed_python_block():
    assert find_pending_code("think\n```python\nx = 1\nprint(x)\n```\n") == "x = 1\nprint(x)\n"


def test_find_pending_code_marker_after_fence_and_marker_as_fence():
    assert find_pending_code("```python\nprint(5)\n```\n```output") == "print(5)\n"
    assert find_pending_code("```python\nprint(5)\n```output") == "print(5)\n"


def test_find_pending_code_none_for_other_blocks():
    assert find_pending_code("```text\nhello\n```\n") is None
    assert find_pending_code("```python\nx = 1\n") is None  # not closed yet
    assert find_pending_code("```python\nx=1\n```\nmore\n```\n") is None  # fence of a later block
    assert find_pending_code("the answer is 4.```output") is None


def test_cut_at_markers_takes_the_first_marker():
    assert cut_at_markers("a```\nb```output c", ["```output", "```\n"]) == ("a```\n", "```\n", True)
    assert cut_at_markers("abc", ["```\n"]) == ("abc", None, False)
    assert cut_at_markers("x```output", ["```output"]) == ("x```output", "```output", False)


def test_format_tool_output_wraps_and_truncates():
    r = ExecResult(output="5\n", ok=True)
    assert format_tool_output(r, 100, after_marker=False) == "```output\n5\n```\n"
    assert format_tool_output(r, 100, after_marker=True) == "\n5\n```\n"
    long = format_tool_output(ExecResult(output="x" * 30, ok=True), 10, after_marker=False)
    assert long.startswith("```output\nxxxxxxxxxx\n[... 20 more characters cut ...]")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_tool_calls"):
        TIRConfig(max_tool_calls=-1)


# ---------------------------------------------------------------- scripted engine
ScriptedEngine, StreamingScriptedEngine = ScriptedTIREngine, StreamingScriptedTIREngine


@pytest.fixture(params=["rounds", "streaming"])
def Scripted(request):
    """Both TIR loops: one generate call per round, and continuous batching."""
    return ScriptedEngine if request.param == "rounds" else StreamingScriptedEngine


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(size=2, config=SandboxConfig(timeout_s=2.0)) as p:
        yield p


def _tir(engine, prompts, pool, n=1, max_tokens=400, seed=None, temperature=0.0, **cfg):
    sampling = SamplingConfig(n=n, max_tokens=max_tokens, seed=seed, temperature=temperature)
    return run_tir(engine, prompts, sampling, TIRConfig(**cfg), pool=pool)


CODE = "Let me compute.\n```python\nx = 6 * 7\nprint(x)\n```\n"


def test_one_call_appends_output_and_continues(pool, Scripted):
    engine = Scripted({"P": [CODE, "So the answer is \\boxed{42}."]})
    (r,), = _tir(engine, ["P"], pool)
    assert r.text == CODE + "```output\n42\n```\n" + "So the answer is \\boxed{42}."
    assert r.segments == [(CODE, "model"), ("```output\n42\n```\n", "tool"),
                          ("So the answer is \\boxed{42}.", "model")]
    assert (r.num_code_calls, r.num_code_errors, r.finish_reason) == (1, 0, "stop")
    model_text = CODE + "So the answer is \\boxed{42}."
    assert r.model_token_ids == [ord(c) for c in model_text]
    assert r.num_model_tokens == len(model_text) and r.model_text == model_text
    assert r.model_logprobs == [-0.5] * len(model_text)
    # token-exact: the whole sequence after the prompt, tool output included, mask 0 on it
    assert r.token_ids == [ord(c) for c in r.text]
    assert r.mask == [1] * len(CODE) + [0] * len("```output\n42\n```\n") + \
        [1] * (len(model_text) - len(CODE))
    assert r.logprobs == [-0.5 if m else 0.0 for m in r.mask]
    assert [len(t) for t in r.segment_token_ids] == [len(CODE), len("```output\n42\n```\n"),
                                                     len(model_text) - len(CODE)]


def test_state_carries_across_blocks_of_a_rollout(pool, Scripted):
    second = "```python\nprint(x + 1)\n```\n"
    engine = Scripted({"P": [CODE, second, "done"]})
    (r,), = _tir(engine, ["P"], pool)
    assert "```output\n43\n```\n" in r.text and r.num_code_calls == 2


def test_code_error_is_counted_and_shown(pool, Scripted):
    engine = Scripted({"P": ["```python\n1/0\n```\n", "oops"]})
    (r,), = _tir(engine, ["P"], pool)
    assert r.num_code_errors == 1 and "ZeroDivisionError" in r.segments[1][0]
    assert r.segments[1][1] == "tool" and r.text.endswith("oops")


def test_timeout_is_counted(pool, Scripted):
    engine = Scripted({"P": ["```python\nwhile True: pass\n```\n", "gave up"]})
    (r,), = _tir(engine, ["P"], pool)
    assert r.num_timeouts == 1 and r.num_code_errors == 1 and "Timed out" in r.text


def test_model_cannot_fake_tool_output(pool, Scripted):
    engine = Scripted({"P": ["The result is\n```output\n999\n```\nso \\boxed{999}"]})
    (r,), = _tir(engine, ["P"], pool)
    assert "999" not in r.text and r.finish_reason == "fake_output"
    assert r.segments == [("The result is\n```output", "model")]


def test_marker_right_after_code_runs_the_code(pool, Scripted):
    turn = "```python\nprint(5)\n```output\n999\n```\n"
    engine = Scripted({"P": [turn, "end"]})
    (r,), = _tir(engine, ["P"], pool)
    assert r.text == "```python\nprint(5)\n```output\n5\n```\nend"
    assert "999" not in r.text and r.num_code_calls == 1


def test_engine_ignoring_stop_strings_is_cut(pool, Scripted):
    turn = "```python\nprint(2 + 2)\n```\n```output\n5\n```\nanswer 5"
    engine = Scripted({"P": [turn, "answer 4"]}, honour_stops=False)
    (r,), = _tir(engine, ["P"], pool)
    assert r.text == "```python\nprint(2 + 2)\n```\n```output\n4\n```\nanswer 4"
    assert r.cut_text


def test_engine_dropping_the_stop_string(pool, Scripted):
    engine = Scripted({"P": [CODE, "fine"]}, drop_stop_str=True)
    (r,), = _tir(engine, ["P"], pool)
    assert r.text == CODE + "```output\n42\n```\nfine"


def test_other_fences_do_not_run_code(pool, Scripted):
    turn = "Plan:\n```text\nstep 1\n```\nNo code needed, \\boxed{1}."
    engine = Scripted({"P": [turn]})
    (r,), = _tir(engine, ["P"], pool)
    assert r.text == turn and r.num_code_calls == 0 and r.finish_reason == "stop"
    assert len(engine.calls) == 2  # stopped at the fence, then continued


def test_tool_call_limit(pool, Scripted):
    block = "```python\nprint(1)\n```\n"
    engine = Scripted({"P": [block, block + "```output\n7\n```\n"]})
    (r,), = _tir(engine, ["P"], pool, max_tool_calls=1)
    assert r.num_code_calls == 1 and r.finish_reason == "max_tool_calls"
    assert r.text == block + "```output\n1\n```\n" + block + "```output"


def test_token_budget_over_all_rounds(pool, Scripted):
    engine = Scripted({"P": [CODE, "x" * 500]})
    (r,), = _tir(engine, ["P"], pool, max_new_tokens=60)
    assert r.finish_reason == "length" and r.num_model_tokens == 60
    assert r.text == CODE + "```output\n42\n```\n" + "x" * (60 - len(CODE))


def test_batches_all_active_rollouts_in_one_call_per_round(pool):
    engine = ScriptedEngine({"A": [CODE, "```python\nprint(x)\n```\n", "a"], "B": ["b"]})
    results = _tir(engine, ["A", "B"], pool, n=3, temperature=0.7)
    assert [len(g) for g in results] == [3, 3]
    assert [len(prompts) for prompts, _ in engine.calls] == [2, 3, 3]  # round 0: n=3 each
    assert [cfg.n for _, cfg in engine.calls] == [3, 1, 1]
    assert all(r.num_code_calls == 2 and r.text.endswith("a") for r in results[0])
    assert all(r.text == "b" and r.num_code_calls == 0 for r in results[1])
    # each rollout has its own session: all three printed 42, none saw another's state
    assert all(r.segments[3] == ("```output\n42\n```\n", "tool") for r in results[0])
    assert pool.open_sessions == 0  # sessions are closed when run_tir returns


def test_seed_moves_on_each_round(pool):
    engine = ScriptedEngine({"P": [CODE, "```python\nprint(x)\n```\n", "end"]})
    _tir(engine, ["P"], pool, n=2, seed=11, temperature=1.0)
    assert [cfg.seed for _, cfg in engine.calls] == [11, 12, 13]


def test_greedy_first_round_asks_once_and_copies(pool, Scripted):
    engine = Scripted({"P": ["just \\boxed{1}"]})
    results = _tir(engine, ["P"], pool, n=4)
    assert [cfg.n for _, cfg in engine.calls] == [1]
    assert [r.text for r in results[0]] == ["just \\boxed{1}"] * 4


def test_streaming_continuation_joins_while_others_decode(pool):
    """No round barrier: A's continuations start while B (1500 tokens, ~3 s of fake decoding)
    is still decoding, and the results equal those of the round-based loop."""
    scripts = {"A": [CODE, "```python\nprint(x)\n```\n", "a"], "B": ["b" * 1500]}
    engine = StreamingScriptedEngine(scripts)
    results = _tir(engine, ["A", "B"], pool, n=2, temperature=0.7, max_tokens=2000)
    rounds = _tir(ScriptedEngine(scripts), ["A", "B"], pool, n=2, temperature=0.7,
                  max_tokens=2000)
    assert [[r.text for r in g] for g in results] == [[r.text for r in g] for g in rounds]
    assert all(r.num_code_calls == 2 for r in results[0])
    continuations = [step for step, _, _ in engine.submits if step > 0]
    assert len(continuations) == 4  # two per A rollout
    assert max(continuations) < 1500  # all of them joined while B was decoding
    assert pool.open_sessions == 0 and not engine.has_pending()


def test_streaming_seeds_differ_per_rollout_and_turn(pool):
    engine = StreamingScriptedEngine({"P": [CODE, "end"]})
    _tir(engine, ["P"], pool, n=3, seed=5, temperature=1.0)
    seeds = [cfg.seed for _, _, cfg in engine.submits]
    assert len(seeds) == 6 and len(set(seeds)) == 6
    again = StreamingScriptedEngine({"P": [CODE, "end"]})
    _tir(again, ["P"], pool, n=3, seed=5, temperature=1.0)
    assert sorted(cfg.seed for _, _, cfg in again.submits) == sorted(seeds)  # reproducible


def test_streaming_budget_is_per_rollout(pool):
    """Each continuation asks for what its own rollout has left, not the batch minimum."""
    engine = StreamingScriptedEngine({"A": [CODE, "x" * 500], "B": ["y" * 500]})
    _tir(engine, ["A", "B"], pool, max_tokens=100)
    asked = {rid.rsplit("-", 1)[1]: cfg.max_tokens for step, rid, cfg in engine.submits
             if step > 0}
    assert asked == {"0": 100 - len(CODE)}


def test_streaming_error_leaves_no_request_in_the_engine(pool):
    class Failing(StreamingScriptedEngine):
        def poll(self):
            if self.steps == 3:
                raise RuntimeError("engine died")
            return super().poll()

    engine = Failing({"P": ["x" * 50]})
    with pytest.raises(RuntimeError, match="engine died"):
        _tir(engine, ["P"], pool, n=2, temperature=0.7)
    assert len(engine.cancelled) == 2 and not engine.has_pending()
    assert pool.open_sessions == 0


# ---------------------------------------------------------------- tiny real model
def test_tiny_random_model_end_to_end(pool, tiny_tokenizer):
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.testing import make_tiny_model

    engine = HFEngine(make_tiny_model(tiny_tokenizer), tiny_tokenizer)
    results = run_tir(engine, ["Compute 2+2.", "Solve x^2=4."],
                      SamplingConfig(n=2, max_tokens=24, temperature=0.0),
                      TIRConfig(max_new_tokens=24), pool=pool)
    assert [len(g) for g in results] == [2, 2]
    for r in (r for g in results for r in g):
        assert 0 < r.num_model_tokens <= 24 and r.finish_reason in ("length", "stop")
        assert "".join(t for t, _ in r.segments) == r.text
        assert len(r.model_token_ids) == r.num_model_tokens == len(r.model_logprobs)
        assert len(r.token_ids) == len(r.mask) == len(r.logprobs)
    assert results[0][0].text == results[0][1].text  # greedy: both rollouts agree
