"""Harmony tool calls in the TIR loop (gpt-oss): a python call ending at <|call|> runs in the
sandbox, its output comes back as a tool message, the ids stay token-exact; other recipients
and no-call endings do not run code. A tiny tokenizer with Harmony's special tokens added
stands in for gpt-oss's."""

from __future__ import annotations

import pytest

from aimo3_recipe.inference.engine import SamplingConfig
from aimo3_recipe.inference.tir_executor import (
    TIRConfig,
    find_harmony_call,
    format_harmony_output,
    run_tir,
)
from aimo3_recipe.testing import TextEngine, make_tiny_tokenizer
from aimo3_recipe.utils.code_execution import ExecResult, SandboxConfig, SandboxPool

SPECIALS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|call|>", "<|return|>"]
CALL = "<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>"
FINAL = "<|channel|>final<|message|>So the answer is \\boxed{42}.<|return|>"


@pytest.fixture(scope="module")
def harmony_tokenizer():
    tok = make_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    return tok


class HarmonyEngine(TextEngine):
    """Calls python first; once a tool message is in its context, answers from it."""

    def reply(self, prompt, config, index):
        if "<|start|>python to=assistant" in prompt:
            return FINAL
        return CALL


def test_find_harmony_call():
    assert find_harmony_call(CALL) == "print(6 * 7)"
    assert find_harmony_call("<|channel|>analysis<|message|>think<|end|><|start|>assistant"
                             + CALL) == "print(6 * 7)"
    assert find_harmony_call("<|channel|>commentary to=functions.f<|message|>{}<|call|>") is None
    assert find_harmony_call(FINAL) is None
    # the recipient of an earlier message does not count for the last one
    assert find_harmony_call("<|channel|>analysis to=python<|message|>x<|end|><|start|>"
                             "assistant<|channel|>analysis<|message|>y<|call|>") is None


def test_format_harmony_output():
    out = format_harmony_output(ExecResult("42\n", ok=True), 100)
    assert out == ("<|start|>python to=assistant<|channel|>analysis<|message|>42<|end|>"
                   "<|start|>assistant")


def test_harmony_tool_call_runs_and_continues(harmony_tokenizer):
    engine = HarmonyEngine(harmony_tokenizer)
    prompt = harmony_tokenizer("<|start|>user<|message|>What is 6 * 7?<|end|><|start|>assistant",
                               add_special_tokens=False)["input_ids"]
    with SandboxPool(size=1, config=SandboxConfig(timeout_s=10.0)) as pool:
        [results] = run_tir(engine, [prompt], SamplingConfig(n=2, temperature=0.7,
                                                             max_tokens=200),
                            TIRConfig(max_tool_calls=2, tool_format="harmony"), pool)
    for r in results:
        assert r.num_code_calls == 1 and r.num_code_errors == 0 and r.finish_reason == "stop"
        assert "\\boxed{42}" in r.model_text and "42" in r.segments[1][0]
        assert [src for _, src in r.segments] == ["model", "tool", "model"]
        call_id = harmony_tokenizer.convert_tokens_to_ids("<|call|>")
        assert r.segment_token_ids[0][-1] == call_id  # the call token stays in the ids
        assert harmony_tokenizer.decode(r.token_ids, skip_special_tokens=True) == r.text
        tool = harmony_tokenizer.decode(r.segment_token_ids[1], skip_special_tokens=False)
        assert tool.startswith("<|start|>python to=assistant") and tool.endswith("assistant")
        assert sum(r.mask) == r.num_model_tokens
        assert all(m == 0 for m in r.mask[len(r.segment_token_ids[0]):][:len(
            r.segment_token_ids[1])])


def test_harmony_needs_the_call_token(tiny_tokenizer):
    with pytest.raises(ValueError, match="<\\|call\\|>"):
        run_tir(HarmonyEngine(tiny_tokenizer), [[1, 2]], SamplingConfig(),
                TIRConfig(tool_format="harmony"))
    with pytest.raises(ValueError, match="tool_format"):
        TIRConfig(tool_format="xml")
