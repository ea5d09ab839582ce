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

This module schedules; the tool-call format (fenced ```python blocks, or gpt-oss's Harmony
python tool: `TIRConfig.tool_format`) is a `ToolProtocol` (tool_protocol.py), which says
where a turn stops, whether it called the tool and what the tool message looks like.

`run_tir` works with any `Engine` (transformers, vLLM, Tinker), in one of two loops:
- streaming (engines with continuous batching, `StreamingEngine`: vLLM): every rollout is its
  own request; when one stops at a tool call, its code runs in a thread while the others
  keep decoding, and its continuation (prompt + transcript) joins the running batch as soon as
  the output is back, its prefix served by vLLM's prefix cache. Each continuation asks for
  what its own rollout has left of the token budget. Seeds: seed + rollout/turn offsets.
- rounds (other engines): every round makes ONE `engine.generate` call with all still-active
  rollouts (n=1 each), then the tool calls of that round run in parallel. The first round
  asks for `sampling.n` samples of each prompt instead of n copies with n=1 (engines that seed
  each request would otherwise return n identical samples); later rounds use seed + round.
Each rollout runs its calls in its own sandbox session (state carries over between a
rollout's calls, as in a notebook). Greedy sampling with n > 1 runs one rollout per prompt
and copies it.

Token-exact: a rollout is built as tokens, never by re-tokenising its transcript. A
continuation's prompt is prompt ids + the ids the model sampled + the tokenised tool output
+ ..., so `TIRResult.token_ids` (everything after the prompt), its `mask` (1 = sampled by
the model, 0 = tool output or forced) and `logprobs` (the sampler's, 0.0 where mask is 0)
describe exactly the context the sampler saw: RL's importance ratios and loss mask use them
as they are. The transcript text is the decoded sampled ids plus the tool output text, so
`tokenizer.decode(token_ids, skip_special_tokens=True) == text` (one limit: a multi-byte
character split by a round's token limit decodes as two replacement characters).

Stop markers: text an engine returns past a stop marker (engines that ignore stop strings) is
cut, so tool output is never the model's: the sampled ids are cut to the shortest prefix that
completes the marker (stop_strings.py; `TIRResult.cut_text` is True); text inside that last
token past the marker stays, since the model sampled it. An engine that leaves a matched stop
string out of its ids gets it appended as forced tokens (mask 0).

Stopping early (`should_stop`): the caller is asked after every engine step (streaming) or
round with the rollouts that ended since it was last asked; when it says stop, every
unfinished rollout is cancelled: its requests are aborted in the engine, a cell it is running
is killed, and its result keeps what it had up to its last finished turn, with
finish_reason="cancelled" (the competition solver's early stop and hard deadline use this).

Context window: where the engine knows its window (`max_model_len`: vLLM's, the transformers
engine's), no turn asks for more than the window leaves after the rollout's context, and a
rollout whose context fills the window (its own turns, or a tool output that does not fit)
ends with finish_reason="length", keeping its text, ids and log-probs; it is never resubmitted
with a prompt the engine would reject.

Entropy: when the engine returns top-k log-probs (`SamplingConfig.top_logprobs`),
`TIRResult.entropies` holds each sampled token's entropy, in `model_token_ids` order.

Limits: `max_tool_calls` calls per rollout (after that, a call no longer stops generation
(fenced) and one the model insists on ends the rollout with finish_reason="max_tool_calls"),
`max_new_tokens` model tokens per rollout in total, and `max_rounds` generate calls.
Sessions come from `pool` (default: the shared pool for `config.sandbox`); a rollout opens
its session at its first tool call and closes it as soon as the rollout ends.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.engine import (
    Completion,
    Engine,
    SamplingConfig,
    StreamingEngine,
    context_window,
)
from aimo3_recipe.inference.finish_reason import FinishReason
from aimo3_recipe.inference.stop_strings import cut_at_markers, stop_prefix_len
from aimo3_recipe.inference.tool_protocol import (  # noqa: F401  (re-exported: public names)
    CODE_OPEN,
    FENCE_STOP,
    HARMONY_CALL,
    HARMONY_OUTPUT,
    OUTPUT_OPEN,
    TOOL_FORMATS,
    TOOL_PROTOCOLS,
    ToolProtocol,
    TurnAction,
    find_harmony_call,
    find_pending_code,
    format_harmony_output,
    format_tool_output,
    make_protocol,
)
from aimo3_recipe.utils.code_execution import (
    ExecResult,
    SandboxConfig,
    SandboxPool,
    Session,
    default_pool,
)


@dataclass
class TIRConfig:
    max_tool_calls: int = 4  # code blocks executed per rollout
    max_new_tokens: int | None = None  # model tokens per rollout, all rounds (None: max_tokens)
    max_rounds: int | None = None  # generate calls per rollout (None: 2 * max_tool_calls + 4)
    max_output_chars: int = 2000  # tool output put back into the context, per block
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # per-cell limits (if no pool)
    tool_format: str = "fenced"  # tool_protocol.TOOL_FORMATS: fenced (```python) | harmony (gpt-oss)

    def __post_init__(self) -> None:
        if self.tool_format not in TOOL_PROTOCOLS:
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
    finish_reason: FinishReason = FinishReason.STOP  # why it ended (finish_reason.py)
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
    finish_reason: FinishReason = FinishReason.STOP
    cut: bool = False
    session: Session | None = None
    pending: TurnAction | None = None  # the tool call its last turn asked for, not run yet

    def end(self, reason: FinishReason) -> None:
        self.done, self.finish_reason = True, reason

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


# (rollouts that ended since the last call: (flat index, result)) -> stop now?
# Flat index = prompt index * sampling.n + sample index.
StopCheck = Callable[[list[tuple[int, TIRResult]]], bool]


@dataclass
class _Run:
    """What every step of either loop needs, fixed for one `run_tir` call."""

    engine: Engine
    proto: ToolProtocol  # the tool-call format
    sampling: SamplingConfig  # the caller's (n, seed, stop strings, ...)
    config: TIRConfig
    pool: SandboxPool  # where sessions come from
    cells: ThreadPoolExecutor  # runs sandbox cells while the engine decodes
    max_rounds: int  # generate calls per rollout
    window: int | None  # the engine's context window (None: it has no known one)
    should_stop: StopCheck | None

    def stops(self, can_call: bool) -> list[str]:
        return self.proto.stops(self.sampling.stop, can_call)

    def room(self, r: _Rollout) -> int:
        """Tokens the rollout's next turn may sample: its budget, capped by the window."""
        if self.window is None:
            return r.budget
        return min(r.budget, self.window - len(r.context))

    def check_limits(self, r: _Rollout) -> None:
        if r.budget <= 0 or (self.window is not None and len(r.context) >= self.window):
            r.end(FinishReason.LENGTH)  # no token left: of the budget, or of the window
        elif r.rounds >= self.max_rounds:
            r.end(FinishReason.MAX_ROUNDS)

    def step(self, r: _Rollout, comp: Completion, stops: list[str]) -> None:
        """Fold one completion into the rollout; decide whether it calls the tool, goes on
        or ends."""
        r.rounds += 1
        text, ids, lps, marker, cut = _sampled_piece(comp, self.proto, stops)
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
                and stop in stops:  # the engine left the stop string out of its ids
            forced = self.proto.encode(stop)
            r.add(stop, "model", forced, 0, [0.0] * len(forced))
            marker = stop
        action = self.proto.read_turn(r.text[r.turn_start:], ids, comp.finish_reason, marker,
                                      r.calls < self.config.max_tool_calls)
        if action.code is not None:
            r.pending = action
        elif action.finish is not None:
            r.end(action.finish)
        else:
            self.check_limits(r)

    def start_code(self, r: _Rollout) -> Future:
        if r.session is None:  # opened at the rollout's first call, kept for its later ones
            r.session = self.pool.session()
        return self.cells.submit(r.session.run, r.pending.code)

    def finish_code(self, r: _Rollout, res: ExecResult) -> None:
        r.calls += 1
        r.errors += int(not res.ok)
        r.timeouts += int(res.timed_out)
        r.tool_seconds += res.duration_s
        text, ids = self.proto.tool_message(res, self.config.max_output_chars, r.pending, r.text)
        r.add(text, "tool", ids, 0, [0.0] * len(ids))
        r.pending = None
        r.turn_start = len(r.text)
        self.check_limits(r)

    def cancel(self, flat: list[_Rollout], running: dict[Future, int]) -> None:
        """`should_stop` said stop: abort the engine's requests, kill running cells, end
        the rest."""
        if isinstance(self.engine, StreamingEngine):
            self.engine.cancel_pending()
        for fut in running:
            fut.cancel()  # a cell not started yet never starts
        for r in flat:
            if not r.done:
                r.end(FinishReason.CANCELLED)
                r.pending = None
                if r.session is not None:
                    r.session.interrupt()


def _sampled_piece(comp: Completion, proto: ToolProtocol, stops: list[str]):
    """(text, ids, logprobs, marker, cut) of one completion: the decoded sampled ids, cut to
    the shortest prefix that completes a stop marker when the engine went past it."""
    ids = list(comp.token_ids)
    lps = None if comp.logprobs is None else list(comp.logprobs[:len(ids)])
    text = proto.decode(ids)
    _, marker, _ = cut_at_markers(text, stops)
    cut = False
    if marker is not None:
        end = stop_prefix_len(ids, proto.decode, stops, text=text)
        if end is not None and end < len(ids):
            cut, ids, text = True, ids[:end], proto.decode(ids[:end])
            lps = None if lps is None else lps[:end]
            _, marker, _ = cut_at_markers(text, stops)
    return text, ids, lps, marker, cut


def _release(r: _Rollout) -> None:
    """A finished rollout frees its sandbox processes (~8 MB) right away."""
    if r.done and r.session is not None:
        r.session.close(wait=False)
        r.session = None


def run_tir(engine: Engine, prompts: list[str] | list[list[int]], sampling: SamplingConfig,
            config: TIRConfig | None = None, pool: SandboxPool | None = None,
            should_stop: StopCheck | None = None) -> list[list[TIRResult]]:
    """`sampling.n` TIR rollouts per prompt (rendered prompt texts, or their token ids);
    returns one list of TIRResult per prompt. `should_stop` (module docstring) can cancel
    the unfinished rollouts at any engine step."""
    config = config or TIRConfig()
    proto = make_protocol(config.tool_format, getattr(engine, "tokenizer", None))
    if prompts and isinstance(prompts[0], str):
        from aimo3_recipe.data.renderers import encode_prompt

        prompts = [encode_prompt(proto.tokenizer, p) for p in prompts]  # type: ignore[arg-type]
    prompt_ids = [list(p) for p in prompts]
    pool = pool or default_pool(config.sandbox)
    if sampling.temperature <= 0 and sampling.n > 1:  # greedy: n equal rollouts; run one
        one = run_tir(engine, prompt_ids, replace(sampling, n=1), config, pool, should_stop)
        return [[copy.deepcopy(group[0]) for _ in range(sampling.n)] for group in one]
    total = config.max_new_tokens or sampling.max_tokens
    rollouts = [[_Rollout(prompt_ids=p, budget=total) for _ in range(sampling.n)]
                for p in prompt_ids]
    flat = [r for group in rollouts for r in group]
    loop = _run_streaming if isinstance(engine, StreamingEngine) else _run_rounds
    try:
        with ThreadPoolExecutor(max_workers=max(1, pool.size * 2)) as cells:
            run = _Run(engine, proto, sampling, config, pool, cells,
                       config.max_rounds or 2 * config.max_tool_calls + 4,
                       context_window(engine), should_stop)
            for r in flat:  # a prompt that fills the window ends before its first turn
                run.check_limits(r)
            loop(run, prompt_ids, flat)
    finally:
        for r in flat:
            if r.session is not None:
                r.session.close()
    return [[r.result() for r in group] for group in rollouts]


def _run_rounds(run: _Run, prompts: list[list[int]], flat: list[_Rollout]) -> None:
    """Engines without continuous batching: one `generate` call per round, all active
    rollouts. A round asks for the smallest budget left, capped by the largest window room:
    the engine ends each completion where its own context fills the window."""
    sampling, n = run.sampling, run.sampling.n
    reported: set[int] = set()
    for round_idx in itertools.count():
        active = [r for r in flat if not r.done]
        if not active:
            break
        stops = run.stops(any(r.calls < run.config.max_tool_calls for r in active))
        max_tokens = min(min(r.budget for r in active), max(run.room(r) for r in active))
        round_cfg = replace(sampling, n=1, stop=stops, include_stop_str=True,
                            max_tokens=max(1, max_tokens))
        if round_idx == 0:  # n samples of each prompt: distinct even under a fixed seed
            live = [p for p in range(len(prompts)) if not flat[p * n].done]
            outs = run.engine.generate_tokens([prompts[p] for p in live],
                                              replace(round_cfg, n=n))
            comps = [c for group in outs for c in group[:n]]
        else:
            if sampling.seed is not None:  # reproducible, yet not round 0's stream again
                round_cfg.seed = sampling.seed + round_idx
            outs = run.engine.generate_tokens([r.context for r in active], round_cfg)
            comps = [group[0] for group in outs]
        for r, comp in zip(active, comps):
            run.step(r, comp, stops)
        to_run = [r for r in active if r.pending is not None]
        futures = [run.start_code(r) for r in to_run]
        for r, fut in zip(to_run, futures):
            run.finish_code(r, fut.result())
        for r in active:
            _release(r)
        if run.should_stop is not None:
            ended = [i for i, r in enumerate(flat) if r.done and i not in reported]
            reported.update(ended)
            if run.should_stop([(i, flat[i].result()) for i in ended]):
                run.cancel(flat, {})
                return


def _run_streaming(run: _Run, prompts: list[list[int]], flat: list[_Rollout]) -> None:
    """Continuous batching: each rollout is its own request; when one stops at a tool call,
    its code runs while the others keep decoding, and its continuation joins the running
    batch as soon as the output is back (the prefix cache serves its prompt + transcript ids).
    No rollout waits for a round to end, so the batch stays full: the per-token cost of TIR
    stays that of plain sampling."""
    engine = run.engine
    assert isinstance(engine, StreamingEngine)
    sampling, tag = run.sampling, uuid.uuid4().hex[:8]

    def stops(r: _Rollout) -> list[str]:
        return run.stops(r.calls < run.config.max_tool_calls)

    def submit(i: int) -> None:
        r = flat[i]
        cfg = replace(sampling, n=1, stop=stops(r), include_stop_str=True,
                      max_tokens=max(1, run.room(r)))
        if sampling.seed is not None:  # distinct per rollout and per turn, reproducible
            cfg.seed = sampling.seed + i * (run.max_rounds + 1) + r.rounds
        engine.submit(f"tir-{tag}-{i}", r.context, cfg)

    def after(i: int) -> None:
        """A turn or a tool call of rollout i ended: run its call, resubmit it, or report it."""
        r = flat[i]
        if r.pending is not None:
            running[run.start_code(r)] = i
        elif r.done:
            _release(r)
            finished.append(i)
        else:
            submit(i)

    running: dict[Future, int] = {}
    finished: list[int] = []  # rollouts ended since should_stop was last asked
    try:
        for i in range(len(flat)):
            after(i)
        while engine.has_pending() or running:
            if engine.has_pending():
                ended = engine.poll()
            else:  # only code is running: wait for it (should_stop is still asked often)
                wait(list(running), timeout=None if run.should_stop is None else 0.05,
                     return_when=FIRST_COMPLETED)
                ended = []
            for request_id, comp in ended:
                i = int(request_id.rsplit("-", 1)[1])
                run.step(flat[i], comp, stops(flat[i]))
                after(i)
            for fut in [f for f in running if f.done()]:
                i = running.pop(fut)
                run.finish_code(flat[i], fut.result())
                after(i)
            if run.should_stop is not None:
                if run.should_stop([(i, flat[i].result()) for i in finished]):
                    run.cancel(flat, running)
                    return
                finished = []
    except BaseException:  # an error or Ctrl-C: leave no request running in the engine
        engine.cancel_pending()
        raise
