"""How a model calls its python tool and reads the result: the formats the TIR loop speaks.

The TIR loop (tir_executor.py) schedules turns, sandboxes and cancellation and knows nothing
of any format; a `ToolProtocol` tells it, per format, three things: the stop strings of a
turn, what a finished turn asks for (run this code, end the rollout, or generate on), and the
tool message that carries the code's output back. A new format is one new subclass, added to
`TOOL_PROTOCOLS` (the name `TIRConfig.tool_format` takes).

- `fenced` (SFT-TIR's format, most open models): the model writes a ```python block; generation
  stops at its closing fence ("```\\n") and at "```output" (the model starting an output block
  itself: stopped before it can write any output; a pending block runs and the real output
  follows the model's marker, otherwise the rollout ends with "fake_output"). Any other fence
  just continues. The output goes back as a ```output block.
- `harmony` (gpt-oss): the model calls its python tool with a message whose header names the
  recipient (`<|channel|>analysis to=python code<|message|>CODE<|call|>`) and stops at the
  `<|call|>` token (an EOS of gpt-oss); the output goes back as a tool message,
  `<|start|>python to=assistant<|channel|>analysis<|message|>OUTPUT<|end|><|start|>assistant`.
  Special tokens are dropped from the texts and kept in the ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.finish_reason import FinishReason
from aimo3_recipe.utils.code_execution import ExecResult

CODE_OPEN = "```python"
FENCE_STOP = "```\n"  # a closing fence (an opening one is "```python\n")
OUTPUT_OPEN = "```output"
HARMONY_CALL = "<|call|>"  # gpt-oss ends a tool call with this token
HARMONY_OUTPUT = ("<|start|>python to=assistant<|channel|>analysis<|message|>{output}<|end|>"
                  "<|start|>assistant")


@dataclass
class TurnAction:
    """What a finished model turn asks the loop to do: run `code`, or end the rollout with
    `finish`; neither: generate on (the turn was cut by max_tokens, or closed a fence that
    calls no tool)."""

    code: str | None = None  # the code of the tool call the turn ended with
    after_marker: bool = False  # fenced: the model wrote the ```output marker itself
    finish: FinishReason | None = None  # end the rollout with this reason


def _clip(output: str, max_chars: int) -> str:
    out = output.rstrip("\n")
    if len(out) > max_chars:
        out = out[:max_chars] + f"\n[... {len(out) - max_chars} more characters cut ...]"
    return out


def find_pending_code(text: str) -> str | None:
    """The code of a ```python block that `text` ends by closing (trailing whitespace and a
    trailing ```output marker ignored), or None if `text` does not end with a closed one."""
    body = text.rstrip()
    if body.endswith(OUTPUT_OPEN):
        before = body[: -len(OUTPUT_OPEN)].rstrip()
        # "```\n```output" closes the block first; in "code\n```output" the marker's own
        # backticks are the closing fence
        body = before if before.endswith("```") else before + "\n```"
    if not body.endswith("```"):
        return None
    body = body[:-3]
    start = body.rfind(CODE_OPEN)
    if start < 0:
        return None
    code = body[start + len(CODE_OPEN):]
    if "```" in code:  # the closing fence belongs to a later block, not this one
        return None
    return code.split("\n", 1)[1] if "\n" in code else ""


def format_tool_output(result: ExecResult, max_chars: int, after_marker: bool) -> str:
    """The ```output block appended after a code block (the marker may be the model's)."""
    head = "\n" if after_marker else OUTPUT_OPEN + "\n"
    return f"{head}{_clip(result.output, max_chars)}\n```\n"


def find_harmony_call(text: str) -> str | None:
    """The code of the python tool call that `text` (decoded with special tokens kept) ends
    with: its last message's header (after the last <|end|> / <|start|>) names `to=python`
    and it ends at <|call|>. None otherwise (another recipient, or no call)."""
    body = text.rstrip()
    if not body.endswith(HARMONY_CALL):
        return None
    body = body[: -len(HARMONY_CALL)]
    at = body.rfind("<|message|>")
    if at < 0:
        return None
    header = body[:at]
    header = header[max(header.rfind("<|end|>"), header.rfind("<|start|>")) + 1:]
    if "to=python" not in header:
        return None
    return body[at + len("<|message|>"):]


def format_harmony_output(result: ExecResult, max_chars: int) -> str:
    """The tool message that answers a Harmony python call, ending with the assistant's turn."""
    return HARMONY_OUTPUT.format(output=_clip(result.output, max_chars))


class ToolProtocol(ABC):
    """One tool-call format over one tokenizer (module docstring). Subclasses implement
    `stops`, `read_turn` and `tool_message`; decode / encode are shared."""

    name: ClassVar[str]  # the TIRConfig.tool_format value

    def __init__(self, tokenizer: Any) -> None:
        if tokenizer is None:
            raise ConfigError("run_tir needs an engine with a `tokenizer` (TIR continuations "
                              "are built as token ids)")
        self.tokenizer = tokenizer

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def decode_special(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def encode(self, text: str) -> list[int]:
        from aimo3_recipe.data.renderers import encode_text

        return encode_text(self.tokenizer, text)

    @abstractmethod
    def stops(self, user_stops: Sequence[str], can_call: bool) -> list[str]:
        """The stop strings of one turn: the caller's plus the format's own (`can_call`:
        tool calls are still allowed)."""

    @abstractmethod
    def read_turn(self, turn_text: str, ids: list[int], finish_reason: str,
                  marker: str | None, can_call: bool) -> TurnAction:
        """What a turn asks for. `turn_text`: the model's text since the last tool output
        (this turn's included); `ids`: this turn's sampled ids; `finish_reason`: the
        engine's; `marker`: the stop string the turn ended at (None: EOS or max_tokens)."""

    @abstractmethod
    def tool_message(self, result: ExecResult, max_chars: int, action: TurnAction,
                     transcript: str) -> tuple[str, list[int]]:
        """(text, ids) appended after a tool call ran: its output, and whatever the format
        puts between it and the model's next turn. `transcript`: the rollout's text so far."""

    def _end_or_continue(self, finish_reason: str, marker: str | None) -> TurnAction:
        """No tool call: EOS or a caller's stop string ends the rollout; max_tokens goes on."""
        if marker is not None or finish_reason != "length":
            return TurnAction(finish=FinishReason.STOP)
        return TurnAction()


class FencedProtocol(ToolProtocol):
    """```python blocks answered by ```output blocks."""

    name = "fenced"

    def stops(self, user_stops: Sequence[str], can_call: bool) -> list[str]:
        return list(dict.fromkeys([OUTPUT_OPEN, *user_stops, *([FENCE_STOP] if can_call else [])]))

    def read_turn(self, turn_text: str, ids: list[int], finish_reason: str,
                  marker: str | None, can_call: bool) -> TurnAction:
        if marker not in (FENCE_STOP, OUTPUT_OPEN):
            return self._end_or_continue(finish_reason, marker)
        code = find_pending_code(turn_text)
        if code is not None and can_call:
            return TurnAction(code=code, after_marker=marker == OUTPUT_OPEN)
        if marker == OUTPUT_OPEN:  # an output block the model wants to write itself
            return TurnAction(finish=FinishReason.FAKE_OUTPUT if can_call
                              else FinishReason.MAX_TOOL_CALLS)
        return TurnAction()  # a fence that closes another kind of block, or opens a bare one

    def tool_message(self, result: ExecResult, max_chars: int, action: TurnAction,
                     transcript: str) -> tuple[str, list[int]]:
        out = format_tool_output(result, max_chars, action.after_marker)
        if action.after_marker and transcript.endswith("\n"):  # the model's marker had it
            out = out[1:]
        return out, self.encode(out)


class HarmonyProtocol(ToolProtocol):
    """gpt-oss's python tool: a call is a message to `python` ending at <|call|>."""

    name = "harmony"

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        cid = tokenizer.convert_tokens_to_ids(HARMONY_CALL)
        if cid is None or cid == getattr(tokenizer, "unk_token_id", None):
            raise ConfigError(f"tool_format='harmony' needs a tokenizer with the "
                              f"{HARMONY_CALL} token (gpt-oss's); this one has none")
        self.call_id = int(cid)

    def stops(self, user_stops: Sequence[str], can_call: bool) -> list[str]:
        return list(dict.fromkeys(user_stops))  # tool calls end at a token (an EOS)

    def read_turn(self, turn_text: str, ids: list[int], finish_reason: str,
                  marker: str | None, can_call: bool) -> TurnAction:
        if finish_reason == "stop" and ids and ids[-1] == self.call_id:
            code = find_harmony_call(self.decode_special(ids))
            if code is not None:
                return TurnAction(code=code) if can_call else \
                    TurnAction(finish=FinishReason.MAX_TOOL_CALLS)
        return self._end_or_continue(finish_reason, marker)

    def tool_message(self, result: ExecResult, max_chars: int, action: TurnAction,
                     transcript: str) -> tuple[str, list[int]]:
        ids = self.encode(format_harmony_output(result, max_chars))
        return self.decode(ids), ids  # its special tokens are in the ids, not the text


# TIRConfig.tool_format -> its protocol; a new format is one entry here
TOOL_PROTOCOLS: dict[str, type[ToolProtocol]] = {
    p.name: p for p in (FencedProtocol, HarmonyProtocol)}
TOOL_FORMATS = tuple(TOOL_PROTOCOLS)


def make_protocol(tool_format: str, tokenizer: Any) -> ToolProtocol:
    """The protocol named `tool_format`, over the engine's tokenizer."""
    if tool_format not in TOOL_PROTOCOLS:
        raise ConfigError(f"TIRConfig.tool_format must be one of {TOOL_FORMATS}; "
                          f"got {tool_format!r}")
    return TOOL_PROTOCOLS[tool_format](tokenizer)
