"""Tool-integrated reasoning: the model writes Python, the sandbox runs it, generation goes on.

Each rollout alternates model text and tool output in the format SFT-TIR trains on:

    ...reasoning...
    ```python
    print(2 + 3)
    ```
    ```output
    5
    ```
    ...more reasoning... \\boxed{5}

`run_tir` works with any `Engine` (transformers, vLLM, Tinker), in one of two loops:
- streaming (engines with continuous batching, `StreamingEngine`: vLLM): every rollout is its
  own request; when one stops at a code block, its code runs in a thread while the others
  keep decoding, and its continuation (prompt + transcript) joins the running batch as soon as
  the output is back, its prefix served by vLLM's prefix cache. Each continuation asks for
  what its own rollout has left of the token budget. Seeds: seed + rollout/turn offsets.
- rounds (other engines): every round makes ONE `engine.generate` call with all still-active
  rollouts (n=1 each), then the code blocks of that round run in parallel. The first round
  asks for `sampling.n` samples of each prompt instead of n copies with n=1 (engines that seed
  each request would otherwise return n identical samples); later rounds use seed + round.
Each rollout runs its blocks in its own sandbox session (state carries over between a
rollout's blocks, as in a notebook). Greedy sampling with n > 1 runs one rollout per prompt
and copies it.

Token-exact: a rollout is built as tokens, never by re-tokenising its transcript. A
continuation's prompt is prompt ids + the ids the model sampled + the tokenised tool output
+ ..., so `TIRResult.token_ids` (everything after the prompt), its `mask` (1 = sampled by
the model, 0 = tool output or forced) and `logprobs` (the sampler's, 0.0 where mask is 0)
describe exactly the context the sampler saw: RL's importance ratios and loss mask use them
as they are. The transcript text is the decoded sampled ids plus the tool output text, so
`tokenizer.decode(token_ids, skip_special_tokens=True) == text` (one limit: a multi-byte
character split by a round's token limit decodes as two replacement characters).

Stopping: generation stops at the closing fence of a block ("```\\n") and at "```output". The
first case runs the block if it is a ```python block (any other fence just continues). The
second is the model starting an output block itself: generation stops before it can write
any output; if a python block is pending it runs and the real output follows the model's
marker, otherwise the rollout ends with finish_reason="fake_output". Text an engine returns
past a stop marker (engines that ignore stop strings) is cut, so tool output is never the
model's: the sampled ids are cut to the shortest prefix that completes the marker (and
`TIRResult.cut_text` is True); text inside that last token past the marker stays, since the
model sampled it. An engine that leaves a matched stop string out of its ids gets it
appended as forced tokens (mask 0).

Stopping early (`should_stop`): the caller is asked after every engine step (streaming) or
round with the rollouts that ended since it was last asked; when it says stop, every
unfinished rollout is cancelled: its requests are aborted in the engine, a cell it is running
is killed, and its result keeps what it had up to its last finished turn, with
finish_reason="cancelled" (the competition solver's early stop and hard deadline use this).

Harmony (gpt-oss, `TIRConfig(tool_format="harmony")`): instead of fenced blocks, the model
calls its python tool with a message whose header names the recipient (`<|channel|>analysis
to=python code<|message|>CODE<|call|>`) and stops at the `<|call|>` token (an EOS of gpt-oss);
the output goes back as a tool message, `<|start|>python to=assistant<|channel|>analysis
<|message|>OUTPUT<|end|><|start|>assistant`, and the model goes on. Special tokens are
dropped from the texts (`text` is still the decoded ids), kept in the ids.

Entropy: when the engine returns top-k log-probs (`SamplingConfig.top_logprobs`),
`TIRResult.entropies` holds each sampled token's entropy, in `model_token_ids` order.

Limits: `max_tool_calls` blocks per rollout (after that, code fences no longer stop generation
and a model-written ```output ends the rollout with finish_reason="max_tool_calls"),
`max_new_tokens` model tokens per rollout in total, and `max_rounds` generate calls.
Sessions come from `pool` (default: the shared pool for `config.sandbox`); a rollout opens
its session at its first code block and closes it as soon as the rollout ends.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.engine import Engine, SamplingConfig, StreamingEngine
from aimo3_recipe.utils.code_execution import (
    ExecResult,
    SandboxConfig,
    SandboxPool,
    Session,
    default_pool,
)

CODE_OPEN = "```python"
FENCE_STOP = "```\n"  # a closing fence (an opening one is "```python\n")
OUTPUT_OPEN = "```output"
TOOL_FORMATS = ("fenced", "harmony")
HARMONY_CALL = "<|call|>"  # gpt-oss ends a tool call with this token
HARMONY_OUTPUT = ("<|start|>python to=assistant<|channel|>analysis<|message|>{output}<|end|>"
                  "<|start|>assistant")


@dataclass
class TIRConfig:
    max_tool_calls: int = 4  # code blocks executed per rollout
    max_new_tokens: int | None = None  # model tokens per rollout, all rounds (None: max_tokens)
    max_rounds: int | None = None  # generate calls per rollout (None: 2 * max_tool_calls + 4)
    max_output_chars: int = 2000  # tool output put back into the context, per block
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # per-cell limits (if no pool)
    tool_format: str = "fenced"  # fenced (```python blocks) | harmony (gpt-oss python tool)

    def __post_init__(self) -> None:
        if self.tool_format not in TOOL_FORMATS:
            raise ConfigError(f"TIRConfig.tool_format must be one of {TOOL_FORMATS}; "
                              f"got {self.tool_format!r}")
        if self.max_tool_calls < 0:
            raise ConfigError(f"TIRConfig.max_tool_calls must be >= 0; got {self.max_tool_calls}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"TIRConfig.max_new_tokens must be >= 1; got {self.max_new_tokens}")


@dataclass
class TIRResult:
    text: str  # the full transcript after the prompt (model text and tool output)
    segments: list[tuple[str, str]]  # (text, "model" | "tool") in order; they concatenate to `text`
    num_code_calls: int = 0  # blocks executed
    num_code_errors: int = 0  # blocks that raised, timed out or crashed
    num_timeouts: int = 0  # blocks killed at the wall-clock limit
    tool_seconds: float = 0.0  # wall clock its code blocks took in the sandbox
    # stop | length | max_tool_calls | max_rounds | fake_output | cancelled (should_stop)
    finish_reason: str = "stop"
    num_model_tokens: int = 0  # tokens the model sampled for this rollout (sum of mask)
    prompt_ids: list[int] = field(default_factory=list)  # the prompt the rollout started from
    token_ids: list[int] = field(default_factory=list)  # every token after the prompt, in order
    mask: list[int] = field(default_factory=list)  # per token: 1 sampled, 0 tool output / forced
    logprobs: list[float] | None = None  # per token: the sampler's (0.0 where mask is 0)
    segment_token_ids: list[list[int]] = field(default_factory=list)  # per segment
    cut_text: bool = False  # sampled ids past a stop marker were cut (engine ignored a stop)
    # per sampled token (model_token_ids order): its top-k entropy; None without top-k
    entropies: list[float] | None = None

    @property
    def model_text(self) -> str:
        """What the model wrote (tool output left out): rewards grade only this."""
        return "".join(t for t, src in self.segments if src == "model")

    @property
    def model_token_ids(self) -> list[int]:
        return [t for t, m in zip(self.token_ids, self.mask) if m]

    @property
    def model_logprobs(self) -> list[float] | None:
        """The sampler's log-prob of each sampled token (confidence for voting)."""
        if self.logprobs is None:
            return None
        return [lp for lp, m in zip(self.logprobs, self.mask) if m]


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
    out = result.output.rstrip("\n")
    if len(out) > max_chars:
        out = out[:max_chars] + f"\n[... {len(out) - max_chars} more characters cut ...]"
    head = "\n" if after_marker else OUTPUT_OPEN + "\n"
    return f"{head}{out}\n```\n"


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
    out = result.output.rstrip("\n")
    if len(out) > max_chars:
        out = out[:max_chars] + f"\n[... {len(out) - max_chars} more characters cut ...]"
    return HARMONY_OUTPUT.format(output=out)


def cut_at_markers(text: str, markers: list[str]) -> tuple[str, str | None, bool]:
    """Cut `text` after the first stop marker it contains. Returns (text, marker, cut)."""
    best = None
    for m in markers:
        i = text.find(m)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, m)
    if best is None:
        return text, None, False
    end = best[0] + len(best[1])
    return text[:end], best[1], end < len(text)


@dataclass
class _Rollout:
    prompt_ids: list[int]
    budget: int
    segments: list[tuple[str, str]] = field(default_factory=list)
    segment_token_ids: list[list[int]] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    entropies: list[float] | None = field(default_factory=list)  # of sampled tokens
    turn_start: int = 0  # where in `text` the model's current turn began (after tool output)
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    tool_seconds: float = 0.0
    rounds: int = 0
    done: bool = False
    finish_reason: str = "stop"
    cut: bool = False
    session: Session | None = None
    pending_code: str | None = None
    pending_after_marker: bool = False

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)

    @property
    def context(self) -> list[int]:
        """What the engine continues: the prompt and every token after it, as sampled."""
        return self.prompt_ids + self.token_ids

    def add(self, text: str, source: str, ids: list[int], mask: int,
            logprobs: list[float] | None) -> None:
        self.token_ids.extend(ids)
        self.mask.extend([mask] * len(ids))
        if self.logprobs is not None and logprobs is not None:
            self.logprobs.extend(logprobs)
        else:
            self.logprobs = None
        if self.segments and self.segments[-1][1] == source:
            self.segments[-1] = (self.segments[-1][0] + text, source)
            self.segment_token_ids[-1] = self.segment_token_ids[-1] + list(ids)
        else:
            self.segments.append((text, source))
            self.segment_token_ids.append(list(ids))

    def result(self) -> TIRResult:
        return TIRResult(
            text=self.text, segments=list(self.segments), num_code_calls=self.calls,
            num_code_errors=self.errors, num_timeouts=self.timeouts,
            tool_seconds=self.tool_seconds, finish_reason=self.finish_reason,
            num_model_tokens=sum(self.mask), prompt_ids=list(self.prompt_ids),
            token_ids=list(self.token_ids), mask=list(self.mask),
            logprobs=None if self.logprobs is None else list(self.logprobs),
            segment_token_ids=[list(x) for x in self.segment_token_ids], cut_text=self.cut,
            entropies=None if self.entropies is None else list(self.entropies))


class _Tokens:
    """The engine tokenizer's decode / encode, as TIR uses them."""

    def __init__(self, tokenizer, tool_format: str = "fenced") -> None:
        if tokenizer is None:
            raise ConfigError("run_tir needs an engine with a `tokenizer` (TIR continuations "
                              "are built as token ids)")
        self.tokenizer = tokenizer
        self.call_id: int | None = None  # Harmony: the id of <|call|>
        if tool_format == "harmony":
            cid = tokenizer.convert_tokens_to_ids(HARMONY_CALL)
            if cid is None or cid == getattr(tokenizer, "unk_token_id", None):
                raise ConfigError(f"tool_format='harmony' needs a tokenizer with the "
                                  f"{HARMONY_CALL} token (gpt-oss's); this one has none")
            self.call_id = int(cid)

    def decode_special(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode(self, text: str) -> list[int]:
        from aimo3_recipe.data.renderers import encode_text

        return encode_text(self.tokenizer, text)


def _sampled_piece(comp, tok: _Tokens, stops: list[str]):
    """(text, ids, logprobs, marker, cut) of one completion: the decoded sampled ids, cut to
    the shortest prefix that completes a stop marker when the engine went past it."""
    ids = list(comp.token_ids)
    lps = None if comp.logprobs is None else list(comp.logprobs[:len(ids)])
    text = tok.decode(ids)
    _, marker, _ = cut_at_markers(text, stops)
    cut = False
    # engines that honour stop strings end on the marker's last token: one decode says so
    if marker is not None and any(m in tok.decode(ids[:-1]) for m in stops):
        lo, hi = 1, len(ids)  # containment only grows with the prefix: bisect
        while lo < hi:
            mid = (lo + hi) // 2
            head = tok.decode(ids[:mid])
            lo, hi = (lo, mid) if any(m in head for m in stops) else (mid + 1, hi)
        if lo < len(ids):
            cut, ids, text = True, ids[:lo], tok.decode(ids[:lo])
            lps = None if lps is None else lps[:lo]
    return text, ids, lps, marker, cut


def _step(r: _Rollout, comp, tok: _Tokens, round_stops: list[str],
          max_tool_calls: int, max_rounds: int) -> None:
    """Fold one completion into the rollout; decide whether it runs code, continues or ends."""
    r.rounds += 1
    text, ids, lps, marker, cut = _sampled_piece(comp, tok, round_stops)
    r.budget -= max(len(ids), 1)
    r.cut |= cut
    r.add(text, "model", ids, 1, lps)
    ents = getattr(comp, "entropies", None)
    if r.entropies is not None and ents is not None:
        r.entropies.extend(ents[:len(ids)])
    else:
        r.entropies = None
    stop = comp.stop_reason
    if marker is None and comp.finish_reason == "stop" and isinstance(stop, str) \
            and stop in round_stops:  # the engine left the stop string out of its ids
        forced = tok.encode(stop)
        r.add(stop, "model", forced, 0, [0.0] * len(forced))
        marker = stop
    can_call = r.calls < max_tool_calls
    if tok.call_id is not None:  # Harmony: a tool call is a message ending at <|call|>
        if comp.finish_reason == "stop" and ids and ids[-1] == tok.call_id:
            code = find_harmony_call(tok.decode_special(ids))
            if code is not None:
                if can_call:
                    r.pending_code, r.pending_after_marker = code, False
                else:
                    r.done, r.finish_reason = True, "max_tool_calls"
                return
        if marker is not None or comp.finish_reason != "length":
            r.done, r.finish_reason = True, "stop"
            return
    elif marker in (FENCE_STOP, OUTPUT_OPEN):
        code = find_pending_code(r.text[r.turn_start:])
        if code is not None and can_call:
            r.pending_code, r.pending_after_marker = code, marker == OUTPUT_OPEN
            return
        if marker == OUTPUT_OPEN:  # an output block the model wants to write itself
            r.done, r.finish_reason = True, ("fake_output" if can_call else "max_tool_calls")
            return
        # a fence that closes another kind of block, or opens a bare one: keep generating
    elif marker is not None or comp.finish_reason != "length":
        r.done, r.finish_reason = True, "stop"  # EOS or one of the caller's stop strings
        return
    _check_limits(r, max_rounds)


def _check_limits(r: _Rollout, max_rounds: int) -> None:
    if r.budget <= 0:
        r.done, r.finish_reason = True, "length"
    elif r.rounds >= max_rounds:
        r.done, r.finish_reason = True, "max_rounds"


def _stops(user_stops: list[str], can_call: bool, tool_format: str = "fenced") -> list[str]:
    if tool_format == "harmony":  # tool calls end at a token (an EOS), not a string
        return list(dict.fromkeys(user_stops))
    return list(dict.fromkeys([OUTPUT_OPEN] + user_stops + ([FENCE_STOP] if can_call else [])))


def _start_code(r: _Rollout, pool: SandboxPool, cells: ThreadPoolExecutor) -> Future:
    if r.session is None:  # opened at the rollout's first block, kept for its later ones
        r.session = pool.session()
    return cells.submit(r.session.run, r.pending_code)


def _finish_code(r: _Rollout, res: ExecResult, tok: _Tokens, config: TIRConfig,
                 max_rounds: int) -> None:
    r.calls += 1
    r.errors += int(not res.ok)
    r.timeouts += int(res.timed_out)
    r.tool_seconds += res.duration_s
    if tok.call_id is not None:
        ids = tok.encode(format_harmony_output(res, config.max_output_chars))
        out = tok.decode(ids)  # its special tokens are in the ids, not the text
    else:
        out = format_tool_output(res, config.max_output_chars, r.pending_after_marker)
        if r.pending_after_marker and r.text.endswith("\n"):  # the model's marker had it
            out = out[1:]
        ids = tok.encode(out)
    r.add(out, "tool", ids, 0, [0.0] * len(ids))
    r.pending_code = None
    r.turn_start = len(r.text)
    _check_limits(r, max_rounds)


def _release(r: _Rollout) -> None:
    """A finished rollout frees its sandbox processes (~8 MB) right away."""
    if r.done and r.session is not None:
        r.session.close(wait=False)
        r.session = None


# (rollouts that ended since the last call: (flat index, result)) -> stop now?
# Flat index = prompt index * sampling.n + sample index.
StopCheck = Callable[[list[tuple[int, TIRResult]]], bool]


def _cancel(engine: Engine, flat: list[_Rollout], running: dict[Future, int]) -> None:
    """`should_stop` said stop: abort the engine's requests, kill running cells, end the rest."""
    if isinstance(engine, StreamingEngine):
        engine.cancel_pending()
    for fut in running:
        fut.cancel()  # a cell not started yet never starts
    for r in flat:
        if not r.done:
            r.done, r.finish_reason, r.pending_code = True, "cancelled", None
            if r.session is not None:
                r.session.interrupt()


def run_tir(engine: Engine, prompts: list[str] | list[list[int]], sampling: SamplingConfig,
            config: TIRConfig | None = None, pool: SandboxPool | None = None,
            should_stop: StopCheck | None = None) -> list[list[TIRResult]]:
    """`sampling.n` TIR rollouts per prompt (rendered prompt texts, or their token ids);
    returns one list of TIRResult per prompt. `should_stop` (module docstring) can cancel
    the unfinished rollouts at any engine step."""
    config = config or TIRConfig()
    tok = _Tokens(getattr(engine, "tokenizer", None), config.tool_format)
    if prompts and isinstance(prompts[0], str):
        from aimo3_recipe.data.renderers import encode_prompt

        prompts = [encode_prompt(tok.tokenizer, p) for p in prompts]  # type: ignore[arg-type]
    prompt_ids = [list(p) for p in prompts]
    pool = pool or default_pool(config.sandbox)
    if sampling.temperature <= 0 and sampling.n > 1:  # greedy: n equal rollouts; run one
        one = run_tir(engine, prompt_ids, replace(sampling, n=1), config, pool, should_stop)
        return [[copy.deepcopy(group[0]) for _ in range(sampling.n)] for group in one]
    total = config.max_new_tokens or sampling.max_tokens
    max_rounds = config.max_rounds or 2 * config.max_tool_calls + 4
    rollouts = [[_Rollout(prompt_ids=p, budget=total) for _ in range(sampling.n)]
                for p in prompt_ids]
    flat = [r for group in rollouts for r in group]
    loop = _run_streaming if isinstance(engine, StreamingEngine) else _run_rounds
    try:
        with ThreadPoolExecutor(max_workers=max(1, pool.size * 2)) as cells:
            loop(engine, prompt_ids, flat, tok, sampling, config, pool, cells, max_rounds,
                 should_stop)
    finally:
        for r in flat:
            if r.session is not None:
                r.session.close()
    return [[r.result() for r in group] for group in rollouts]


def _run_rounds(engine: Engine, prompts: list[list[int]], flat: list[_Rollout], tok: _Tokens,
                sampling: SamplingConfig, config: TIRConfig, pool: SandboxPool,
                cells: ThreadPoolExecutor, max_rounds: int,
                should_stop: StopCheck | None = None) -> None:
    """Engines without continuous batching: one `generate` call per round, all active rollouts."""
    user_stops = list(sampling.stop)
    reported: set[int] = set()
    for round_idx in itertools.count():
        active = [r for r in flat if not r.done]
        if not active:
            break
        stops = _stops(user_stops, any(r.calls < config.max_tool_calls for r in active),
                       config.tool_format)
        round_cfg = replace(sampling, n=1, stop=stops, include_stop_str=True,
                            max_tokens=max(1, min(r.budget for r in active)))
        if round_idx == 0:  # n samples of each prompt: distinct even under a fixed seed
            outs = engine.generate_tokens(prompts, replace(round_cfg, n=sampling.n))
            comps = [c for group in outs for c in group[:sampling.n]]
        else:
            if sampling.seed is not None:  # reproducible, yet not round 0's stream again
                round_cfg.seed = sampling.seed + round_idx
            outs = engine.generate_tokens([r.context for r in active], round_cfg)
            comps = [group[0] for group in outs]
        for r, comp in zip(active, comps):
            _step(r, comp, tok, stops, config.max_tool_calls, max_rounds)
        to_run = [r for r in active if r.pending_code is not None]
        futures = [_start_code(r, pool, cells) for r in to_run]
        for r, fut in zip(to_run, futures):
            _finish_code(r, fut.result(), tok, config, max_rounds)
        for r in active:
            _release(r)
        if should_stop is not None:
            ended = [i for i, r in enumerate(flat) if r.done and i not in reported]
            reported.update(ended)
            if should_stop([(i, flat[i].result()) for i in ended]):
                _cancel(engine, flat, {})
                return


def _run_streaming(engine: StreamingEngine, prompts: list[list[int]], flat: list[_Rollout],
                   tok: _Tokens, sampling: SamplingConfig, config: TIRConfig, pool: SandboxPool,
                   cells: ThreadPoolExecutor, max_rounds: int,
                   should_stop: StopCheck | None = None) -> None:
    """Continuous batching: each rollout is its own request; when one stops at a code block,
    its code runs while the others keep decoding, and its continuation joins the running
    batch as soon as the output is back (the prefix cache serves its prompt + transcript ids).
    No rollout waits for a round to end, so the batch stays full: the per-token cost of TIR
    stays that of plain sampling."""
    user_stops = list(sampling.stop)
    tag = uuid.uuid4().hex[:8]

    def stops(r: _Rollout) -> list[str]:
        return _stops(user_stops, r.calls < config.max_tool_calls, config.tool_format)

    def submit(i: int) -> None:
        r = flat[i]
        cfg = replace(sampling, n=1, stop=stops(r), include_stop_str=True,
                      max_tokens=max(1, r.budget))
        if sampling.seed is not None:  # distinct per rollout and per turn, reproducible
            cfg.seed = sampling.seed + i * (max_rounds + 1) + r.rounds
        engine.submit(f"tir-{tag}-{i}", r.context, cfg)

    running: dict[Future, int] = {}
    finished: list[int] = []  # rollouts ended since should_stop was last asked
    try:
        for i in range(len(flat)):
            submit(i)
        while engine.has_pending() or running:
            if engine.has_pending():
                ended = engine.poll()
            else:  # only code is running: wait for it (should_stop is still asked often)
                wait(list(running), timeout=None if should_stop is None else 0.05,
                     return_when=FIRST_COMPLETED)
                ended = []
            for request_id, comp in ended:
                i = int(request_id.rsplit("-", 1)[1])
                r = flat[i]
                _step(r, comp, tok, stops(r), config.max_tool_calls, max_rounds)
                if r.pending_code is not None:
                    running[_start_code(r, pool, cells)] = i
                elif r.done:
                    _release(r)
                    finished.append(i)
                else:
                    submit(i)
            for fut in [f for f in running if f.done()]:
                i = running.pop(fut)
                r = flat[i]
                _finish_code(r, fut.result(), tok, config, max_rounds)
                if r.done:
                    _release(r)
                    finished.append(i)
                else:
                    submit(i)
            if should_stop is not None:
                if should_stop([(i, flat[i].result()) for i in finished]):
                    _cancel(engine, flat, running)
                    return
                finished = []
    except BaseException:  # an error or Ctrl-C: leave no request running in the engine
        engine.cancel_pending()
        raise
