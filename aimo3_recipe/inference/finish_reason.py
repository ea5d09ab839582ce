"""Why a completion or a TIR rollout ended: one type, and one meaning of "truncated".

Engines, the TIR loop, RL rewards, answer selection, evaluation metrics and the solver's
replay all read finish reasons; they used to disagree on which ones mean "cut off". This
module is the one place that says. `FinishReason` is a `str` enum, so a value compares equal
to its string ("length") and records written as JSON stay plain strings.

Truncated (`TRUNCATED`, `is_truncated`) means: one of the run's limits ended the text while
the model was still writing it, so the text holds no answer the model finished:
- "length": a token limit: the completion's max_tokens, the TIR rollout's token budget, or
  the engine's context window (max_model_len), whichever came first;
- "max_rounds": the TIR loop's budget of generate calls;
- "max_tool_calls": the model asked for one more tool call than allowed (it wrote a code block
  and waited for its output), so the rest of its solution was never written.
Why one set for everyone: a truncated text can hold an answer boxed early and then argued past
(RL must not pay it, or the policy learns to box first and never finish), an answer a vote
should not count as finished, and a budget problem an evaluation should show in one rate.

Not truncated: "stop" (the model ended: EOS or a stop string), "fake_output" (the model ended
its own turn by writing a tool-output block: graded as written), and "cancelled" (the caller
stopped it early, e.g. the solver's early stop: callers drop those, they are neither finished
nor cut by a limit).
"""

from __future__ import annotations

from enum import StrEnum


class FinishReason(StrEnum):
    STOP = "stop"  # the model ended: EOS or one of the caller's stop strings
    LENGTH = "length"  # a token limit: max_tokens, the TIR token budget or the context window
    MAX_ROUNDS = "max_rounds"  # TIR: the budget of generate calls per rollout
    MAX_TOOL_CALLS = "max_tool_calls"  # TIR: a tool call past max_tool_calls
    FAKE_OUTPUT = "fake_output"  # TIR: the model wrote a tool-output block itself
    CANCELLED = "cancelled"  # TIR: the caller's should_stop ended it early
    ERROR = "error"  # the attempt failed (engine refused it, sandbox or grader error): no vote


# finish reasons of a text cut off by a limit before the model finished it (module docstring)
TRUNCATED: frozenset[FinishReason] = frozenset(
    {FinishReason.LENGTH, FinishReason.MAX_ROUNDS, FinishReason.MAX_TOOL_CALLS})


def is_truncated(reason: str | None) -> bool:
    """Whether a finish reason (an enum member or its string, as read from JSON) means the text
    was cut off by a limit. None (an old record without one) is not truncated."""
    return reason is not None and reason in TRUNCATED
