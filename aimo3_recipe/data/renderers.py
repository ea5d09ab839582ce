"""Turn a problem (+ solution) into chat text and training tokens, for CoT and TIR.

One rule keeps training and inference in step: the prompt is rendered once, by
`render_prompt`, and tokenised once, by `encode_prompt`; a training example is those exact
prompt tokens followed by the completion tokens. We never tokenise `prompt + completion` as
one string, because BPE can merge characters across the boundary (SmolLM2 merges the
template's trailing "\\n" with a solution's leading "\\n"), and the model would then be
trained on a prompt it never sees at inference.

TIR solutions are trained on everything the model writes (reasoning, ```python blocks, the
"```output" opener that asks for the result) and masked where the tool writes: the contents
of ```output blocks and their closing fence, which the executor inserts at inference.

Chat formats come from the tokenizer's own chat template (ChatML/Qwen, Llama 3, SmolLM...);
a tokenizer without one gets a plain "Problem: ... Solution:" format. Limits: templates that
rewrite the assistant message in ways that make the prompt no longer a prefix of the full
conversation fall back to prompt + solution + eos (with a warning).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss ignores (PyTorch cross-entropy default)
MODES = ("cot", "tir")

COT_SYSTEM_PROMPT = (
    "You are a careful competition mathematician. Solve the problem step by step, "
    "showing your reasoning, and put the final answer in \\boxed{}."
)
TIR_SYSTEM_PROMPT = (
    "You are a careful competition mathematician who can run Python. Solve the problem "
    "step by step. When a computation helps, write it in a ```python block that prints its "
    "result; the printed output comes back to you in a ```output block. "
    "Put the final answer in \\boxed{}."
)
SYSTEM_PROMPTS = {"cot": COT_SYSTEM_PROMPT, "tir": TIR_SYSTEM_PROMPT}

# The plain fallback for tokenizers without a chat template.
PLAIN_PROMPT = "{system}\n\nProblem: {problem}\n\nSolution: "

# An output block: the opener is trainable (the model asks for the result), the rest is not.
_OUTPUT_BLOCK_RE = re.compile(r"```output[^\S\n]*\n(.*?)```", re.DOTALL)


@dataclass
class RenderedExample:
    """One tokenised training example; `labels` is `input_ids` with IGNORE_INDEX where masked."""

    input_ids: list[int]  # prompt tokens (exactly what inference sends) + completion tokens
    labels: list[int]  # same length; IGNORE_INDEX on the prompt and on tool output
    attention_mask: list[int] = field(default_factory=list)  # all ones (no padding here)
    num_prompt_tokens: int = 0  # how many leading tokens are the prompt

    @property
    def num_trainable(self) -> int:
        """How many tokens carry loss (0 means the example teaches nothing: drop it)."""
        return sum(label != IGNORE_INDEX for label in self.labels)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        from aimo3_recipe.exceptions import ConfigError

        raise ConfigError(f"mode must be one of {list(MODES)} (chain-of-thought or "
                          f"tool-integrated reasoning); got {mode!r}")


def build_messages(problem: str, mode: str = "cot", solution: str | None = None) -> list[dict]:
    """The conversation for a problem: system, user, and the assistant's solution if given."""
    _check_mode(mode)
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[mode]},
                {"role": "user", "content": problem}]
    if solution is not None:
        messages.append({"role": "assistant", "content": solution})
    return messages


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _apply_template(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as e:  # some templates (Gemma) reject a system role: fold it into the user
        if messages[0]["role"] != "system":
            raise
        logger.debug("chat template rejected a system message (%s); merging it into user", e)
        merged = [{"role": "user", "content": messages[0]["content"] + "\n\n"
                   + messages[1]["content"]}] + messages[2:]
        return tokenizer.apply_chat_template(merged, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)


def render_prompt(tokenizer, problem: str, mode: str = "cot") -> str:
    """The exact prompt text inference sends to an engine (chat template + generation prompt)."""
    messages = build_messages(problem, mode)
    if not has_chat_template(tokenizer):
        return PLAIN_PROMPT.format(system=messages[0]["content"], problem=problem)
    return _apply_template(tokenizer, messages, add_generation_prompt=True)


def encode_text(tokenizer, text: str, *, is_prompt_start: bool = False) -> list[int]:
    """Tokenise a piece of rendered text without adding special tokens twice.

    Chat templates write their own BOS (Llama 3's <|begin_of_text|>), so rendered text gets
    none added; only the start of a plain-format prompt gets the tokenizer's usual specials.
    """
    add_special = is_prompt_start and not has_chat_template(tokenizer)
    bos = getattr(tokenizer, "bos_token", None)
    if add_special and bos and text.startswith(bos):
        add_special = False
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """The token ids of a rendered prompt: what engines given token ids should send."""
    return encode_text(tokenizer, prompt_text, is_prompt_start=True)


def split_tir_spans(solution: str) -> list[tuple[str, bool]]:
    """Split a TIR solution into (text, trainable) pieces that concatenate back to it.

    Trainable: reasoning, ```python blocks and the "```output\\n" opener. Not trainable: the
    output block's contents and closing fence (the executor writes those at inference).
    An unclosed output block (a truncated solution) is masked to the end.
    """
    spans: list[tuple[str, bool]] = []
    pos = 0
    for m in _OUTPUT_BLOCK_RE.finditer(solution):
        spans.append((solution[pos:m.start(1)], True))
        spans.append((solution[m.start(1):m.end()], False))
        pos = m.end()
    rest = solution[pos:]
    opener = re.search(r"```output[^\S\n]*\n", rest)
    if opener:  # truncated block with no closing fence
        spans.append((rest[:opener.end()], True))
        spans.append((rest[opener.end():], False))
    else:
        spans.append((rest, True))
    return [(text, trainable) for text, trainable in spans if text]


def _completion_text(tokenizer, problem: str, solution: str, mode: str, prompt_text: str) -> str:
    """What follows the prompt in the full conversation: the solution plus end-of-turn marker."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    if not has_chat_template(tokenizer):
        return solution + eos
    full = _apply_template(tokenizer, build_messages(problem, mode, solution),
                           add_generation_prompt=False)
    if not full.startswith(prompt_text):
        logger.warning("the chat template's full conversation does not start with its "
                       "generation prompt; training on prompt + solution + eos instead")
        return solution + eos
    completion = full[len(prompt_text):]
    # Train up to and including the last end-of-turn token; what follows (a newline) is
    # never generated, because inference stops at eos.
    if eos and eos in completion:
        completion = completion[: completion.rindex(eos) + len(eos)]
    return completion


def render_example(tokenizer, problem: str, solution: str, mode: str = "cot",
                   max_length: int | None = None) -> RenderedExample:
    """Tokens and loss mask for one (problem, solution) pair.

    The prompt is masked; in TIR mode the contents of ```output blocks are masked too.
    `max_length` truncates from the right (check `num_trainable` before using the example).
    """
    _check_mode(mode)
    prompt_text = render_prompt(tokenizer, problem, mode)
    prompt_ids = encode_prompt(tokenizer, prompt_text)
    completion = _completion_text(tokenizer, problem, solution, mode, prompt_text)
    spans = split_tir_spans(completion) if mode == "tir" else [(completion, True)]

    input_ids = list(prompt_ids)
    labels = [IGNORE_INDEX] * len(prompt_ids)
    for text, trainable in spans:
        ids = encode_text(tokenizer, text)
        input_ids += ids
        labels += ids if trainable else [IGNORE_INDEX] * len(ids)
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return RenderedExample(input_ids=input_ids, labels=labels,
                           attention_mask=[1] * len(input_ids),
                           num_prompt_tokens=min(len(prompt_ids), len(input_ids)))
