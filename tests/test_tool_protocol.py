"""Tool-call formats are classes (inference/tool_protocol.py): a third format is one new
`ToolProtocol` subclass registered by name, and the TIR loop runs it unchanged. Also the one
stop-string bisection (inference/stop_strings.py) both the HF engine and TIR use."""

from __future__ import annotations

import pytest

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference import tir_executor
from aimo3_recipe.inference.engine import SamplingConfig
from aimo3_recipe.inference.finish_reason import FinishReason
from aimo3_recipe.inference.stop_strings import cut_at_markers, stop_prefix_len
from aimo3_recipe.inference.tool_protocol import (
    TOOL_PROTOCOLS,
    FencedProtocol,
    HarmonyProtocol,
    ToolProtocol,
    TurnAction,
    make_protocol,
)
from aimo3_recipe.testing import CharTokenizer, TextEngine
from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool


class XmlProtocol(ToolProtocol):
    """A toy third format: <python>CODE</python>, answered by <output>OUT</output>."""

    name = "xml"

    def stops(self, user_stops, can_call):
        return list(dict.fromkeys([*user_stops, *(["</python>"] if can_call else [])]))

    def read_turn(self, turn_text, ids, finish_reason, marker, can_call):
        if marker == "</python>":
            return TurnAction(code=turn_text.rsplit("<python>", 1)[1][: -len("</python>")])
        return self._end_or_continue(finish_reason, marker)

    def tool_message(self, result, max_chars, action, transcript):
        out = f"<output>{result.output.strip()[:max_chars]}</output>"
        return out, self.encode(out)


class XmlModel(TextEngine):
    """Calls the tool once, then answers from its output; writes past its stop marker (an
    engine that ignores stop strings), which the loop must cut."""

    def reply(self, prompt, config, index):
        if "<output>" in prompt:
            return "so \\boxed{" + prompt.rsplit("<output>", 1)[1].split("<", 1)[0] + "}"
        return "Let me run <python>print(6 * 7)</python> and more text the model went on with"


def test_a_third_format_is_one_class(monkeypatch):
    monkeypatch.setitem(TOOL_PROTOCOLS, "xml", XmlProtocol)
    engine = XmlModel(CharTokenizer())
    with SandboxPool(size=1, config=SandboxConfig(timeout_s=5.0)) as pool:
        (r,), = tir_executor.run_tir(engine, ["Q: 6*7? "], SamplingConfig(max_tokens=400),
                                     tir_executor.TIRConfig(tool_format="xml"), pool=pool)
    assert r.text == "Let me run <python>print(6 * 7)</python><output>42</output>so \\boxed{42}"
    assert (r.num_code_calls, r.finish_reason, r.cut_text) == (1, FinishReason.STOP, True)
    assert [src for _, src in r.segments] == ["model", "tool", "model"]


def test_protocol_registry_and_unknown_format():
    assert TOOL_PROTOCOLS == {"fenced": FencedProtocol, "harmony": HarmonyProtocol}
    assert isinstance(make_protocol("fenced", CharTokenizer()), FencedProtocol)
    with pytest.raises(ConfigError, match="tool_format"):
        make_protocol("xml", CharTokenizer())
    with pytest.raises(ConfigError, match="tool_format"):
        tir_executor.TIRConfig(tool_format="xml")
    with pytest.raises(ConfigError, match="tokenizer"):
        make_protocol("fenced", None)


def test_public_names_still_import_from_the_executor():
    for name in ("TIRConfig", "TIRResult", "run_tir", "find_pending_code", "format_tool_output",
                 "find_harmony_call", "format_harmony_output", "cut_at_markers", "TOOL_FORMATS",
                 "CODE_OPEN", "FENCE_STOP", "OUTPUT_OPEN", "HARMONY_CALL", "StopCheck"):
        assert hasattr(tir_executor, name), name


def test_fenced_read_turn_decisions():
    p = FencedProtocol(CharTokenizer())
    code = "```python\nprint(1)\n```\n"
    assert p.read_turn(code, [], "stop", "```\n", True) == TurnAction(code="print(1)\n")
    assert p.read_turn(code + "```output", [], "stop", "```output", True).after_marker
    assert p.read_turn("x```output", [], "stop", "```output", True).finish == "fake_output"
    assert p.read_turn(code + "```output", [], "stop", "```output", False).finish == \
        "max_tool_calls"
    assert p.read_turn("```text\nhi\n```\n", [], "stop", "```\n", True) == TurnAction()
    assert p.read_turn("abc", [], "length", None, True) == TurnAction()
    assert p.read_turn("abc", [], "stop", None, True).finish == "stop"


# ---------------------------------------------------------------- stop strings
PIECES = ["ab", "c```", "\nxy", "z", "```\n"]  # token id -> its text


def _decode(counter):
    def decode(ids):
        counter.append(len(ids))
        return "".join(PIECES[i] for i in ids)
    return decode


def test_stop_prefix_len_finds_the_completing_token():
    calls: list[int] = []
    assert stop_prefix_len([0, 1, 2, 3], _decode(calls), ["```\n"]) == 3  # past it: cut
    assert stop_prefix_len([0, 3, 4], _decode(calls), ["```\n"]) == 3  # ends on it
    assert stop_prefix_len([0, 3], _decode(calls), ["```\n"]) is None
    assert stop_prefix_len([0, 1, 2], _decode([]), []) is None
    # an engine that honoured the stop: one decode beyond the text the caller already has
    calls.clear()
    text = "".join(PIECES[i] for i in [0, 1, 2])
    assert stop_prefix_len([0, 1, 2], _decode(calls), ["```\n"], text=text) == 3
    assert calls == [2]
    # the earliest-completing of several stops, as vLLM checks after every token
    assert stop_prefix_len([0, 1, 2, 3, 4], _decode([]), ["z", "c```"]) == 2


def test_cut_at_markers_takes_the_earliest_start():
    assert cut_at_markers("ab```\nc```output", ["```output", "```\n"]) == ("ab```\n", "```\n",
                                                                           True)
    assert cut_at_markers("abc", ["x"]) == ("abc", None, False)
