"""The solver's prompt formats carry the answer-range rule: ChatML through the tokenizer's
template (or the plain format), Harmony through openai-harmony."""

from __future__ import annotations

import pytest

from aimo3_recipe.inference.aimo.prompts import AIMO_RULE, prompt_ids
from aimo3_recipe.testing import CharTokenizer


def test_chatml_prompt_has_the_rule_and_the_problem(tiny_tokenizer):
    ids = prompt_ids("chatml", tiny_tokenizer, "What is 2 + 3?")
    text = tiny_tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n") and AIMO_RULE in text
    assert text.endswith("What is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")


def test_plain_prompt_without_a_chat_template():
    text = CharTokenizer().decode(prompt_ids("chatml", CharTokenizer(), "Find n."))
    assert AIMO_RULE in text and "Problem: Find n." in text


def test_harmony_prompt_for_gpt_oss():
    h = pytest.importorskip("openai_harmony")
    try:
        enc = h.load_harmony_encoding(h.HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as e:  # noqa: BLE001 - its vocabulary file is fetched once, then cached
        pytest.skip(f"openai-harmony cannot load its encoding offline here: {e}")
    ids = prompt_ids("harmony", None, "Find n.", reasoning_effort="medium")
    text = enc.decode(ids)
    assert "Reasoning: medium" in text and AIMO_RULE in text and "## python" in text
    assert text.endswith("<|start|>user<|message|>Find n.<|end|><|start|>assistant")


def test_unknown_format_is_a_config_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="prompt_format"):
        prompt_ids("llama", tiny_tokenizer, "x")
    with pytest.raises(ValueError, match="reasoning_effort"):
        prompt_ids("harmony", None, "x", reasoning_effort="max")
