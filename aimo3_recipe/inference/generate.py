"""Solve maths problems with a model and a strategy; the `aimo3 generate` command.

    MathGenerator(GenerationConfig(model_name_or_path="default", strategy="majority_vote",
                                   num_samples=8)).solve("What is 12 + 35?")

Strategies (all return the answer plus the evidence: candidates, their answers, votes, time,
tokens, early stopping):
- `greedy`: one temperature-0 completion.
- `majority_vote`: SC@N, the most frequent answer; ties go to the answer seen first.
- `weighted_vote`: votes weighted by exp(mean token log-prob) of each candidate.
- `tir`: tool-integrated rollouts (`tir_executor.run_tir`: the model writes Python, the sandbox
  runs it); with num_samples > 1 this is SC-TIR, a majority vote over TIR rollouts.
- `genselect`: sample N, then the model reads the distinct-answer candidates and names the best
  (genselect.py); when it cannot decide, the majority answer stands.
The choice among candidates is `solution_selection.select`, the layer evaluation also uses.

Early stopping (`early_stop_k`): samples are drawn `sample_chunk` at a time and a problem stops
once K of its answers agree, as the strongest AIMO notebooks do. `solve_batch` runs many
problems together (one engine call per chunk for all still-open problems).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.engine import Engine, SamplingConfig, make_engine
from aimo3_recipe.inference.vllm_config import VLLMConfig, check_vllm_config, with_context
from aimo3_recipe.inference.solution_selection import Candidate as SelectionCandidate
from aimo3_recipe.inference.solution_selection import (
    mean_logprob_confidence,
    select,
    should_stop_early,
)
from aimo3_recipe.inference.strategies import STRATEGIES


@dataclass
class GenerationConfig(VLLMConfig):
    """`aimo3 generate`. The vLLM engine group (vllm_config.py) is inherited: tensor and data
    parallelism, quantization, kv_cache_dtype, gpu_memory_utilization, max_model_len (None:
    max(4096, max_new_tokens + 2048)), enable_sleep_mode."""

    model_name_or_path: str = "default"  # 'default' (embedded SmolLM2-135M), folder, .gguf, hub id
    strategy: str = "majority_vote"  # greedy | majority_vote | weighted_vote | tir | genselect
    num_samples: int = 8  # samples per problem (N of SC@N); greedy uses 1
    temperature: float = 0.7  # sampling temperature (greedy: 0)
    top_p: float = 0.95  # nucleus sampling
    max_new_tokens: int = 1024  # tokens per completion (TIR: per rollout, all rounds)
    use_vllm: bool | str = "auto"  # auto (vLLM where installed and fast here) | true | false
    early_stop_k: int | None = None  # stop sampling a problem once this many answers agree
    sample_chunk: int = 4  # samples drawn per round when early stopping
    max_tool_calls: int = 4  # TIR: code blocks executed per rollout
    seed: int = 0  # sampling seed (vLLM on CPU: engine seed only)
    prompt_mode: str | None = None  # cot | tir; None: tir for the tir strategy, else cot
    genselect_window: int = 4  # GenSelect: candidates shown to the judge at once
    genselect_max_chars: int = 4000  # GenSelect: characters of candidate summaries per prompt
    genselect_max_tokens: int = 512  # GenSelect: tokens of the judge's answer
    batch_size: int = 32  # transformers engine: sequences per generate call
    device: str = "auto"  # auto | cpu | cuda | mps (transformers engine)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        from aimo3_recipe.utils.hardware import parse_use_vllm

        check_vllm_config(self)
        self.use_vllm = parse_use_vllm(self.use_vllm)  # True | False | "auto"; else an error
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}; got {self.strategy!r}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1; got {self.num_samples}")
        if self.sample_chunk < 1:
            raise ConfigError(f"sample_chunk must be >= 1; got {self.sample_chunk}")
        if self.prompt_mode not in (None, "cot", "tir"):
            raise ConfigError(f"prompt_mode must be cot, tir or unset; got {self.prompt_mode!r}")


@dataclass
class Candidate:
    text: str  # the completion (TIR: the whole transcript with tool output)
    answer: str | None  # extracted final answer (None: none found)
    num_tokens: int  # tokens the model generated for it
    mean_logprob: float | None  # mean token log-prob (raw model distribution)
    weight: float  # exp(mean_logprob): its vote in weighted_vote
    finish_reason: str  # a FinishReason value (inference/finish_reason.py)
    tool_calls: int = 0  # TIR: code blocks executed
    tool_errors: int = 0  # TIR: blocks that failed

    def for_selection(self) -> SelectionCandidate:
        return SelectionCandidate(answer=self.answer, text=self.text,
                                  mean_logprob=self.mean_logprob,
                                  finish_reason=self.finish_reason)


@dataclass
class SolveResult:
    problem: str  # the problem text
    answer: str | None  # the final answer (None: no candidate had one)
    strategy: str  # the strategy used
    candidates: list[Candidate]  # every sample drawn, in order
    votes: dict[str, float] = field(default_factory=dict)  # answer group key -> votes
    tie: bool = False  # the top vote was shared
    tied: list[str] = field(default_factory=list)  # the tied answers
    tie_break: str = "first_seen"  # how ties were broken
    reason: str = ""  # why this answer: "majority 5/8", "genselect", "fallback: ...", ...
    chosen: int | None = None  # index of the candidate the answer came from
    early_stopped: bool = False  # sampling stopped before num_samples (K answers agreed)
    samples_drawn: int = 0  # candidates generated
    tokens_generated: int = 0  # all model tokens, judge included
    time_s: float = 0.0  # wall time for this problem (batch time shared equally in solve_batch)
    selection: dict[str, Any] = field(default_factory=dict)  # GenSelect report

    @property
    def answers(self) -> list[str | None]:
        return [c.answer for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract(text: str) -> str | None:
    """Final answer of a completion, by the verifier's extractor."""
    from aimo3_recipe.grader import extract_answer

    return extract_answer(text)


class MathGenerator:
    """Build once (loads the engine), then `solve` / `solve_batch` any number of problems."""

    def __init__(self, config: GenerationConfig, engine: Engine | None = None):
        self.config = config
        self.engine = engine or make_engine(
            config.model_name_or_path, config.use_vllm, device=config.device,
            dtype=config.dtype, seed=config.seed, batch_size=config.batch_size,
            vllm_config=with_context(config, config.max_new_tokens))
        self.tokenizer = self.engine.tokenizer

    # -- prompts -------------------------------------------------------------------------
    def render(self, problem: str) -> str:
        from aimo3_recipe.data.renderers import render_prompt

        mode = self.config.prompt_mode or ("tir" if self.config.strategy == "tir" else "cot")
        return render_prompt(self.tokenizer, problem, mode)

    # -- solving -------------------------------------------------------------------------
    def solve(self, problem: str) -> SolveResult:
        return self.solve_batch([problem])[0]

    def solve_batch(self, problems: list[str]) -> list[SolveResult]:
        cfg = self.config
        t0 = time.perf_counter()
        greedy = cfg.strategy == "greedy"
        target = 1 if greedy else cfg.num_samples
        chunk = cfg.sample_chunk if cfg.early_stop_k else target
        cands: list[list[Candidate]] = [[] for _ in problems]
        stopped = [False] * len(problems)
        round_ = 0
        while True:
            open_ = [i for i in range(len(problems))
                     if not stopped[i] and len(cands[i]) < target]
            if not open_:
                break
            n = min(chunk, target - len(cands[open_[0]]))  # open problems move in step
            sampling = SamplingConfig(n=n, temperature=0.0 if greedy else cfg.temperature,
                                      top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                                      seed=cfg.seed + round_, logprobs=True)
            new = self._sample([problems[i] for i in open_], sampling)
            for i, got in zip(open_, new):
                cands[i].extend(got)
                if len(cands[i]) < target and should_stop_early(
                        [c.answer for c in cands[i]], cfg.early_stop_k):
                    stopped[i] = True
            round_ += 1
        per_problem = (time.perf_counter() - t0) / max(1, len(problems))
        results = []
        for problem, cs, early in zip(problems, cands, stopped):
            t1 = time.perf_counter()
            res = self._select(problem, cs)
            res.early_stopped = early
            res.samples_drawn = len(cs)
            res.tokens_generated += sum(c.num_tokens for c in cs)
            res.time_s = per_problem + (time.perf_counter() - t1)
            results.append(res)
        return results

    def _sample(self, problems: list[str], sampling: SamplingConfig) -> list[list[Candidate]]:
        prompts = [self.render(p) for p in problems]
        if self.config.strategy == "tir":
            from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir

            tir_cfg = TIRConfig(max_tool_calls=self.config.max_tool_calls,
                                max_new_tokens=self.config.max_new_tokens)
            outs = run_tir(self.engine, prompts, sampling, tir_cfg)
            return [[Candidate(text=r.text, answer=extract(r.text),
                               num_tokens=r.num_model_tokens,
                               mean_logprob=_mean(r.logprobs),
                               weight=mean_logprob_confidence(_mean(r.logprobs)),
                               finish_reason=r.finish_reason, tool_calls=r.num_code_calls,
                               tool_errors=r.num_code_errors) for r in rs] for rs in outs]
        outs = self.engine.generate(prompts, sampling)
        return [[Candidate(text=c.text, answer=extract(c.text), num_tokens=len(c.token_ids),
                           mean_logprob=c.mean_logprob,
                           weight=mean_logprob_confidence(c.mean_logprob),
                           finish_reason=c.finish_reason) for c in cs] for cs in outs]

    def _select(self, problem: str, cands: list[Candidate]) -> SolveResult:
        cfg = self.config
        judge = None
        if cfg.strategy == "genselect":
            from aimo3_recipe.inference.genselect import make_judge

            judge = make_judge(self.engine, problem, window=cfg.genselect_window,
                               max_chars=cfg.genselect_max_chars,
                               max_tokens=cfg.genselect_max_tokens, seed=cfg.seed)
        sel = select(cfg.strategy, [c.for_selection() for c in cands], judge=judge)
        res = SolveResult(problem=problem, answer=sel.answer, strategy=cfg.strategy,
                          candidates=cands, votes=sel.votes, tie=sel.tie, tied=sel.tied,
                          tie_break=sel.tie_break, reason=sel.reason, chosen=sel.index)
        if sel.genselect is not None:
            res.tokens_generated += sel.genselect.tokens
            res.selection = {**asdict(sel.genselect), "fell_back_to_majority": sel.fallback}
        return res


def _mean(xs: list[float] | None) -> float | None:
    return sum(xs) / len(xs) if xs else None


# -- command line ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from aimo3_recipe.config import add_dataclass_args

    parser = argparse.ArgumentParser(
        prog="aimo3 generate", description="Solve one maths problem with a model and a strategy.")
    parser.add_argument("--problem", required=True, help="the problem text")
    parser.add_argument("--model", dest="model_name_or_path", default=None,
                        help="model: 'default' (embedded SmolLM2-135M), a folder, .gguf or hub id")
    parser.add_argument("--config", default=None, help="YAML file of GenerationConfig fields")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_dataclass_args(parser, GenerationConfig, skip=("model_name_or_path",))
    return parser


def cli(argv: list[str] | None = None) -> int:
    from aimo3_recipe.config import config_from_args
    from aimo3_recipe.exceptions import Aimo3Error

    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(GenerationConfig, args, args.config)
        result = MathGenerator(config).solve(args.problem)
    except Aimo3Error as e:  # our errors say what to do; no traceback needed
        print(f"aimo3 generate: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(format_result(result))
    return 0


def format_result(r: SolveResult) -> str:
    """A short human-readable summary of a SolveResult."""
    lines = [f"answer: {r.answer}" + (f"  ({r.reason})" if r.reason else ""),
             f"strategy: {r.strategy}  samples: {r.samples_drawn}  tokens: {r.tokens_generated}"
             f"  time: {r.time_s:.1f}s" + ("  (stopped early)" if r.early_stopped else "")]
    if r.votes:
        top = sorted(r.votes.items(), key=lambda kv: -kv[1])[:5]
        lines.append("votes: " + ", ".join(f"{k}: {v:.3g}" for k, v in top)
                     + (f"  (tie between {r.tied}, broken by {r.tie_break})" if r.tie else ""))
    if r.selection:
        lines.append(f"genselect: {r.selection.get('reason')}, rounds {r.selection.get('rounds')}, "
                     f"fallbacks {r.selection.get('fallbacks')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli())
