"""Renderers: chat formats, loss masks, and the train/inference prompt-token identity."""

from __future__ import annotations

import pytest

from aimo3_recipe.data.renderers import (
    IGNORE_INDEX,
    build_messages,
    encode_prompt,
    render_example,
    render_prompt,
    split_tir_spans,
)
from aimo3_recipe.exceptions import ConfigError

TIR_SOLUTION = (
    "We factor the quadratic with sympy.\n"
    "```python\nfrom sympy import symbols, solve\nx = symbols('x')\n"
    "print(solve(x**2 - 5*x + 6, x))\n```\n"
    "```output\n[2, 3]\n```\n"
    "The roots are 2 and 3, so the answer is \\boxed{2, 3}."
)

# A Llama-3-style template (header tokens, eot, BOS in the text, trimmed content).
LLAMA3_STYLE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def _llama3_style_tokenizer():
    from aimo3_recipe.testing import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                            "additional_special_tokens": ["<|start_header_id|>",
                                                          "<|end_header_id|>"]})
    tok.chat_template = LLAMA3_STYLE_TEMPLATE
    return tok


def _plain_tokenizer():
    from aimo3_recipe.testing import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    tok.chat_template = None
    return tok


def _assert_prompt_identity(tok, problem: str, solution: str, mode: str) -> None:
    """The training example starts with exactly the tokens inference sends, all masked."""
    ex = render_example(tok, problem, solution, mode)
    prompt_ids = encode_prompt(tok, render_prompt(tok, problem, mode))
    n = len(prompt_ids)
    assert ex.num_prompt_tokens == n
    assert ex.input_ids[:n] == prompt_ids
    assert ex.labels[:n] == [IGNORE_INDEX] * n
    assert len(ex.input_ids) == len(ex.labels) == len(ex.attention_mask)
    assert ex.num_trainable > 0
    # the completion decodes back to the solution text (nothing lost at the boundary)
    completion = tok.decode(ex.input_ids[n:], skip_special_tokens=True)
    assert completion.strip() == solution.strip()


def test_build_messages_roles_and_instructions():
    cot = build_messages("What is 1+1?")
    assert [m["role"] for m in cot] == ["system", "user"]
    assert cot[1]["content"] == "What is 1+1?"
    assert "\\boxed{}" in cot[0]["content"] and "step by step" in cot[0]["content"]
    tir = build_messages("What is 1+1?", "tir", solution="2")
    assert [m["role"] for m in tir] == ["system", "user", "assistant"]
    assert "```python" in tir[0]["content"] and "```output" in tir[0]["content"]
    assert tir[2]["content"] == "2"


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="mode"):
        build_messages("x", mode="rl")


def test_render_prompt_chatml_ends_with_generation_prompt(tiny_tokenizer):
    text = render_prompt(tiny_tokenizer, "Compute 2+2.")
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nCompute 2+2.<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_plain_fallback_without_template():
    tok = _plain_tokenizer()
    text = render_prompt(tok, "Compute 2+2.", "tir")
    assert text.endswith("Problem: Compute 2+2.\n\nSolution: ")
    ex = render_example(tok, "Compute 2+2.", "2+2 = 4, so \\boxed{4}.")
    assert ex.input_ids[-1] == tok.eos_token_id and ex.labels[-1] == tok.eos_token_id


@pytest.mark.parametrize("make_tok", ["chatml", "llama3", "plain"])
@pytest.mark.parametrize("mode", ["cot", "tir"])
def test_train_prompt_tokens_equal_inference_prompt_tokens(tiny_tokenizer, make_tok, mode):
    tok = {"chatml": lambda: tiny_tokenizer, "llama3": _llama3_style_tokenizer,
           "plain": _plain_tokenizer}[make_tok]()
    _assert_prompt_identity(tok, "Solve x^2 - 5x + 6 = 0.", TIR_SOLUTION, mode)
    # a solution that starts with whitespace is where naive tokenisation goes wrong
    _assert_prompt_identity(tok, "What is 12 + 35?", "\n\n12 + 35 = 47. \\boxed{47}", mode)


def test_llama3_style_bos_not_doubled():
    tok = _llama3_style_tokenizer()
    ids = encode_prompt(tok, render_prompt(tok, "Compute 2+2."))
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_chatml_trains_on_end_of_turn_but_not_after(tiny_tokenizer):
    ex = render_example(tiny_tokenizer, "What is 12 + 35?", "\\boxed{47}")
    assert ex.input_ids[-1] == tiny_tokenizer.eos_token_id  # <|im_end|>, then nothing
    assert ex.labels[-1] == tiny_tokenizer.eos_token_id


def test_split_tir_spans_masks_only_tool_output():
    spans = split_tir_spans(TIR_SOLUTION)
    assert "".join(text for text, _ in spans) == TIR_SOLUTION
    masked = [text for text, trainable in spans if not trainable]
    assert masked == ["[2, 3]\n```"]
    trainable = "".join(text for text, t in spans if t)
    assert trainable.count("```python") == 1 and "```output\n" in trainable
    assert "\\boxed{2, 3}" in trainable


def test_split_tir_spans_two_blocks_and_truncated_block():
    sol = "a\n```output\n1\n```\nb\n```output\n22\n```\nc\n```output\nunfinished"
    spans = split_tir_spans(sol)
    assert "".join(t for t, _ in spans) == sol
    assert [t for t, ok in spans if not ok] == ["1\n```", "22\n```", "unfinished"]
    assert split_tir_spans("no tools here") == [("no tools here", True)]


def test_tir_example_masks_output_contents(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = render_example(tok, "Solve x^2 - 5x + 6 = 0.", TIR_SOLUTION, "tir")
    n = ex.num_prompt_tokens
    masked = [i for i, lab in zip(ex.input_ids[n:], ex.labels[n:]) if lab == IGNORE_INDEX]
    trained = [i for i, lab in zip(ex.input_ids[n:], ex.labels[n:]) if lab != IGNORE_INDEX]
    assert tok.decode(masked) == "[2, 3]\n```"
    assert "[2, 3]" not in tok.decode(trained)
    assert "print(solve" in tok.decode(trained)
    # CoT mode trains on the whole completion, output block included
    cot = render_example(tok, "Solve x^2 - 5x + 6 = 0.", TIR_SOLUTION, "cot")
    assert cot.num_trainable == ex.num_trainable + len(masked)


def test_max_length_truncates_from_the_right(tiny_tokenizer):
    full = render_example(tiny_tokenizer, "What is 12 + 35?", "12 + 35 = 47. \\boxed{47}")
    cut = render_example(tiny_tokenizer, "What is 12 + 35?", "12 + 35 = 47. \\boxed{47}",
                         max_length=full.num_prompt_tokens + 3)
    assert cut.input_ids == full.input_ids[: full.num_prompt_tokens + 3]
    assert cut.num_trainable == 3
    only_prompt = render_example(tiny_tokenizer, "What is 12 + 35?", "47", max_length=5)
    assert only_prompt.num_trainable == 0 and len(only_prompt.input_ids) == 5


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cot", "tir"])
def test_prompt_identity_on_real_smollm2_tokenizer(mode):
    from aimo3_recipe.models import load_tokenizer

    tok = load_tokenizer("default")
    _assert_prompt_identity(tok, "Solve x^2 - 5x + 6 = 0.", TIR_SOLUTION, mode)
    _assert_prompt_identity(tok, "What is 12 + 35?", "\n\n12 + 35 = 47. \\boxed{47}", mode)
    # Naive joint tokenisation merges the template's "\n" with the solution's "\n\n" on this
    # BPE, so its prefix differs from the inference prompt; ours does not.
    prompt = render_prompt(tok, "What is 12 + 35?", mode)
    naive = tok(prompt + "\n\n12 + 35 = 47.", add_special_tokens=False)["input_ids"]
    prompt_ids = encode_prompt(tok, prompt)
    assert naive[: len(prompt_ids)] != prompt_ids
    ex = render_example(tok, "What is 12 + 35?", "\n\n12 + 35 = 47.", mode)
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
