"""GPU check for the vLLM engine work (issues 22.2, 23.1-23.3) on a machine WITHOUT vLLM.

The GPU machines this project borrows have torch, transformers, peft and accelerate only, no
vLLM and no network. So this checks what can be checked there and says plainly what it skips:

  weight_sync   RL's weight push on the GPU: peak extra device memory of streaming the
                LoRA-merged weights one layer at a time (rl.local_backend.merged_weights,
                each tensor copied into a stand-in buffer as vLLM's loader would) against
                the old push (clone the whole merged state dict), and max |difference|
                from peft's full merge. Needs CUDA for the memory figures.
  colocate      the arguments the RL engine would pass vLLM on CUDA (TRL's 0.3 share, 4096
                window, sleep mode) and whether that share fits beside the policy on this
                GPU (policy weights + grads + AdamW state + share * total <= total).
  solver        the AIMO solver with the transformers engine (`--use-vllm false`) on a
                randomly initialised model on this device: concurrent attempts, the time rule
                under real timing, one attempt's grading made to fail (it must cost that
                attempt only: the problem is still answered by the others).
  version       the vLLM version gate with faked versions (0.11 refused, 0.16 accepted).
  skipped       vLLM engine start, sleep()/wake_up() freeing memory, tensor/data parallel,
                fp8/AWQ weights, fp8 KV cache: each needs vLLM installed (listed with why).

Usage (prints one JSON, also written to --out):
    python bench/gpu_check_vllm.py --out $OUT/gpu_check_vllm.json          # H100/H200: ~1-3 min
    python bench/gpu_check_vllm.py --tiny                                   # CPU smoke (tests)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _model(tokenizer, size: str, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dims = {"tiny": (64, 2, 4, 128), "1b": (2048, 16, 16, 5632)}[size]
    hidden, layers, heads, inter = dims
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=inter,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, max_position_embeddings=4096,
                      tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def check_weight_sync(tokenizer, size: str, device: str) -> dict[str, Any]:
    import peft
    import torch

    from aimo3_recipe.rl.local_backend import merged_weights

    on_cuda = device == "cuda"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    model = peft.get_peft_model(_model(tokenizer, size, device, dtype), peft.LoraConfig(
        r=64, lora_alpha=128, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    params_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # vLLM's loader copies each tensor into its own parameter: a stand-in buffer per name
    sink = {k: torch.empty_like(v) for k, v in
            copy.deepcopy(model).merge_and_unload().state_dict().items()}

    def peak_extra(fn) -> int | None:
        if not on_cuda:
            fn()
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start

    def stream() -> None:
        for k, v in merged_weights(model):
            sink[k].copy_(v)

    def old_full_clone() -> None:  # the push before: merge, clone everything, unmerge
        model.merge_adapter()
        try:
            state = {k.replace("base_model.model.", "", 1).replace(".base_layer", ""):
                     v.detach().clone() for k, v in model.state_dict().items() if "lora_" not in k}
        finally:
            model.unmerge_adapter()
        for k, v in state.items():
            sink[k].copy_(v)

    t0 = time.perf_counter()
    streamed = peak_extra(stream)
    t_stream = time.perf_counter() - t0
    ref = copy.deepcopy(model).merge_and_unload().state_dict()
    max_diff = max(float((sink[k].float() - ref[k].float()).abs().max()) for k in ref)
    t0 = time.perf_counter()
    old = peak_extra(old_full_clone)
    t_old = time.perf_counter() - t0
    return {"model_params_bytes": params_bytes, "dtype": str(dtype),
            "peak_extra_bytes_streamed": streamed, "peak_extra_bytes_full_clone": old,
            "seconds_streamed": round(t_stream, 3), "seconds_full_clone": round(t_old, 3),
            "max_abs_diff_vs_peft_merge": max_diff,
            "ok": max_diff <= (1e-2 if on_cuda else 1e-6)
            and (streamed is None or old is None or streamed < old)}


def check_colocate(size: str, device: str) -> dict[str, Any]:
    import torch

    from aimo3_recipe.inference.vllm_config import RolloutVLLMConfig, llm_kwargs

    kwargs = llm_kwargs(RolloutVLLMConfig(), on_cuda=True, sleep_mode_supported=True)
    out: dict[str, Any] = {"llm_kwargs_on_cuda": kwargs}
    if device != "cuda":
        out["fit"] = "skipped: no CUDA device (the share is a fraction of GPU memory)"
        return out
    total = torch.cuda.get_device_properties(0).total_memory
    n = {"tiny": 0.1e6, "1b": 1.1e9}[size]
    policy = n * 2 + n * 2 + n * 8  # bf16 weights + bf16 grads + fp32 AdamW moments (full FT)
    out.update({"gpu_total_bytes": total, "policy_full_ft_bytes": int(policy),
                "vllm_share_bytes": int(kwargs["gpu_memory_utilization"] * total),
                "fits_0.3": policy + 0.3 * total <= total,
                "fits_0.85_old_default": policy + 0.85 * total <= total})
    return out


def check_solver(tokenizer, size: str, device: str, problems: int) -> dict[str, Any]:
    import torch

    from aimo3_recipe.inference.aimo import AIMOSolver, SolverConfig
    from aimo3_recipe.inference.hf_engine import HFEngine

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    from aimo3_recipe.inference.aimo import attempts as attempts_mod

    engine = HFEngine(_model(tokenizer, size, device, dtype), tokenizer, device=device)
    calls = {"n": 0}
    real = attempts_mod.normalise_answer

    def second_grading_fails(raw, problem=None, *, modulus=None):  # one attempt's grader
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected: the grader failed on this attempt")
        return real(raw, problem, modulus=modulus)

    attempts_mod.normalise_answer = second_grading_fails  # type: ignore[assignment]
    cfg = SolverConfig(model_name_or_path="random", use_vllm=False, num_attempts=4,
                       max_tokens=64, max_tool_calls=1, total_s=120.0, num_problems=problems,
                       min_s=5.0, reserve_s=0.0, early_stop_k=0, log_text=False, seed=0)
    solver = AIMOSolver(cfg, engine)
    t0 = time.perf_counter()
    try:
        records = [solver.solve(f"What is {i} + 2?", f"p{i}") for i in range(problems)]
    finally:
        attempts_mod.normalise_answer = real  # type: ignore[assignment]
    summary = solver.close()
    return {"seconds": round(time.perf_counter() - t0, 3), "summary": summary,
            "finish_reasons": [[a.finish_reason for a in r.attempts] for r in records],
            "ok": summary["within_budget"] and summary["errors"] == 0
            and summary["attempt_errors"] == 1}


def check_version() -> dict[str, Any]:
    from aimo3_recipe.exceptions import MissingDependencyError
    from aimo3_recipe.inference.vllm_config import check_weight_updates

    out = {}
    for v in ("0.11.0", "0.16.0"):
        try:
            check_weight_updates(types.SimpleNamespace(__version__=v))
            out[v] = "accepted"
        except MissingDependencyError as e:
            out[v] = f"refused: {str(e)[:80]}..."
    out["ok"] = out["0.11.0"].startswith("refused") and out["0.16.0"] == "accepted"
    return out


SKIPPED = {
    "vllm_engine_start": "vLLM is not installed on the GPU machines (no network to add it)",
    "sleep_wake_frees_memory": "needs vLLM's CuMemAllocator (enable_sleep_mode=True)",
    "tensor_data_parallel": "needs vLLM and more than one GPU (torchrun for data parallel)",
    "fp8_awq_weights_fp8_kv_cache": "needs vLLM's quantized kernels",
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from aimo3_recipe.testing import make_tiny_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke test)")
    ap.add_argument("--problems", type=int, default=2, help="solver problems")
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = "tiny" if args.tiny or device != "cuda" else "1b"
    tok = make_tiny_tokenizer()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda"
                              else "cpu", "model": size, "torch": torch.__version__}
    for name, fn in (("weight_sync", lambda: check_weight_sync(tok, size, device)),
                     ("colocate", lambda: check_colocate(size, device)),
                     ("solver", lambda: check_solver(tok, size, device, args.problems)),
                     ("version", check_version)):
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as e:  # noqa: BLE001 - one check failing must not hide the others
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        report[name]["check_seconds"] = round(time.perf_counter() - t0, 3)
    try:
        import vllm  # noqa: F401

        report["skipped"] = {}
    except ImportError:
        report["skipped"] = SKIPPED
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return report


if __name__ == "__main__":
    main()
