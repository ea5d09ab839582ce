"""Prompt formats for the competition solver, with the AIMO answer-range rule.

- "chatml": the model tokenizer's own chat template (ChatML for Qwen and SmolLM models), a
  system message with our TIR instructions (renderers.TIR_SYSTEM_PROMPT, what SFT-TIR trains
  on) plus `AIMO_RULE`; a tokenizer without a template gets the plain "Problem: ...
  Solution:" format. Code runs through ```python blocks (tir_executor).
- "harmony": gpt-oss's Harmony format rendered by `openai-harmony` (optional; it ships with
  vLLM): system message with the reasoning effort and the python tool declared, developer
  message with `HARMONY_INSTRUCTIONS` and `AIMO_RULE`, then the user's problem, ending with
  the assistant's turn. The model calls the tool with `to=python` messages ending at
  `<|call|>`, which run_tir executes with `TIRConfig(tool_format="harmony")`
  (`tool_format_of` gives the TIR format of a prompt format).

Both return prompt token ids: engines take ids (engine.py), so what the model sees is
exactly what was rendered.
"""

from __future__ import annotations

from aimo3_recipe.exceptions import ConfigError, MissingDependencyError

PROMPT_FORMATS = ("chatml", "harmony")

AIMO_RULE = (
    "The final answer is an integer between 0 and 99999 inclusive. If your result is larger, "
    "the problem wants a remainder: reduce it as the problem says. Put the final answer in "
    "\\boxed{}."
)


HARMONY_INSTRUCTIONS = (
    "Solve the problem step by step. Use the python tool to compute and to check your "
    "reasoning; its output comes back to you."
)


def tool_format_of(prompt_format: str) -> str:
    """The TIR tool-call format (tir_executor.TOOL_FORMATS) a prompt format uses."""
    return "harmony" if prompt_format == "harmony" else "fenced"


def system_prompt() -> str:
    from aimo3_recipe.data.renderers import TIR_SYSTEM_PROMPT

    return f"{TIR_SYSTEM_PROMPT}\n{AIMO_RULE}"


def chatml_prompt_ids(tokenizer: object, problem: str) -> list[int]:
    """Prompt ids in the tokenizer's chat template (plain format when it has none)."""
    from aimo3_recipe.data.renderers import PLAIN_PROMPT, encode_prompt, has_chat_template

    if has_chat_template(tokenizer):
        messages = [{"role": "system", "content": system_prompt()},
                    {"role": "user", "content": problem}]
        text = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            messages, tokenize=False, add_generation_prompt=True)
    else:
        text = PLAIN_PROMPT.format(system=system_prompt(), problem=problem)
    return encode_prompt(tokenizer, text)


def harmony_prompt_ids(problem: str, reasoning_effort: str = "high") -> list[int]:
    """Prompt ids of a Harmony conversation (gpt-oss), ending with the assistant's turn."""
    try:
        import openai_harmony as h
    except ImportError as e:
        raise MissingDependencyError(
            f"prompt_format='harmony' needs `openai-harmony` ({e}); pip install openai-harmony "
            "(vLLM installs it), or use prompt_format='chatml'") from e
    efforts = {"low": h.ReasoningEffort.LOW, "medium": h.ReasoningEffort.MEDIUM,
               "high": h.ReasoningEffort.HIGH}
    if reasoning_effort not in efforts:
        raise ConfigError(f"reasoning_effort must be one of {list(efforts)}; "
                          f"got {reasoning_effort!r}")
    enc = h.load_harmony_encoding(h.HarmonyEncodingName.HARMONY_GPT_OSS)
    system = (h.SystemContent.new().with_reasoning_effort(efforts[reasoning_effort])
              .with_tools(h.ToolNamespaceConfig.python()))
    developer = h.DeveloperContent.new().with_instructions(
        f"{HARMONY_INSTRUCTIONS}\n{AIMO_RULE}")
    conv = h.Conversation.from_messages([
        h.Message.from_role_and_content(h.Role.SYSTEM, system),
        h.Message.from_role_and_content(h.Role.DEVELOPER, developer),
        h.Message.from_role_and_content(h.Role.USER, problem)])
    return list(enc.render_conversation_for_completion(conv, h.Role.ASSISTANT))


def prompt_ids(fmt: str, tokenizer: object, problem: str, reasoning_effort: str = "high"
               ) -> list[int]:
    """The prompt of `problem` in format `fmt` (one of PROMPT_FORMATS)."""
    if fmt == "chatml":
        return chatml_prompt_ids(tokenizer, problem)
    if fmt == "harmony":
        return harmony_prompt_ids(problem, reasoning_effort)
    raise ConfigError(f"prompt_format must be one of {PROMPT_FORMATS}; got {fmt!r}")
