"""GPU check of the RL update (issue 22 items 3-5), prepared for one H100/H200 that has torch,
transformers, peft and accelerate but no vLLM, TRL, datasets or network:

    python bench/gpu_check_training.py [--out gpu_check_training.json]
    python bench/gpu_check_training.py --tiny          # the same checks on CPU, in seconds

On a randomly initialised ~1B Qwen2-shaped model (152k vocabulary, full fine-tuning with fp32
master weights under bf16 autocast, the recipe's precision), one GRPO update of `--rollouts`
rollouts of `--length` tokens runs through the real loop (rl/loop.update, rl/local_backend)
in four memory settings, each printing peak GPU memory, seconds and tokens/s:

    one_chunk      the LM head over every trained position at once (logits N x V in fp32, as
                   before issue 22), no activation checkpointing
    chunked        the LM head `--chunk-tokens` positions at a time, checkpointed per chunk
    chunked_ckpt   + gradient checkpointing of the decoder layers (RL's default on CUDA)
    budget         + micro-batches of at most `--budget` padded tokens

then the precision check (the fraction of weights a 1e-6 step moves: fp32 master weights vs a
pure-bf16 model), and the device check (this rank's device and world size as rank_setup sees
them; with one GPU only rank 0 can be shown, cuda:LOCAL_RANK is checked on the mapping).
A setting that runs out of memory is recorded as such and the script goes on. Everything goes
to one JSON file (`--out`, default $OUT/gpu_check_training.json when $OUT is set).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from aimo3_recipe.rl.config import GRPOConfig
from aimo3_recipe.rl.local_backend import LocalBackend
from aimo3_recipe.rl.loop import update
from aimo3_recipe.rl.types import Rollout, RolloutGroup
from aimo3_recipe.training.devices import rank_setup, training_precision

ONE_CHUNK = 10**9  # chunk_tokens larger than any batch: the whole N x V at once


def build_model(tiny: bool, device: str, dtype: torch.dtype):
    """A randomly initialised causal LM: ~1.0B parameters in Qwen2's shape, or a tiny one."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    if tiny:
        config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             tie_word_embeddings=True, max_position_embeddings=4096)
    else:
        config = Qwen2Config(vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                             num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=8,
                             tie_word_embeddings=True, max_position_embeddings=32768)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def make_groups(n: int, length: int, vocab: int, prompt: int, group_size: int = 8):
    """`n` rollouts of `length` tokens (the first `prompt` are the prompt), random tokens, a
    tenth of the completion masked (tool output), advantages +-1 within each group."""
    rng = random.Random(0)
    groups = []
    for g in range(max(1, n // group_size)):
        rollouts = []
        for _ in range(group_size):
            n_tok = length - prompt
            mask = [0 if rng.random() < 0.1 else 1 for _ in range(n_tok)]
            rollouts.append(Rollout(prompt_ids=[rng.randrange(vocab) for _ in range(prompt)],
                                    tokens=[rng.randrange(vocab) for _ in range(n_tok)],
                                    mask=mask, sampler_logprobs=[-1.0 * m for m in mask],
                                    text="", model_text=""))
        groups.append(RolloutGroup(problem=f"p{g}", answer="0", rollouts=rollouts,
                                   advantages_G=[(-1.0) ** i for i in range(group_size)]))
    return groups


def _reset_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def run_update(name: str, opts, accelerator, device: str, groups, *, chunk_tokens: int,
               checkpointing: bool, budget: int) -> dict[str, Any]:
    """One GRPO update in one memory setting; its peak memory, time and tokens/s."""
    _reset_memory(device)
    load, autocast = training_precision(torch.bfloat16, use_lora=False)
    model = build_model(opts.tiny, device, load)
    tokens = sum(len(r.prompt_ids) + len(r.tokens) for g in groups for r in g.rollouts)
    row: dict[str, Any] = {"setting": name, "chunk_tokens": chunk_tokens,
                           "gradient_checkpointing": checkpointing,
                           "max_tokens_per_microbatch": budget, "tokens": tokens}
    try:
        backend = LocalBackend(model, SimpleNamespace(pad_token_id=0), learning_rate=1e-6,
                               accelerator=accelerator, gradient_checkpointing=checkpointing,
                               logprob_chunk_tokens=chunk_tokens,
                               max_tokens_per_microbatch=budget, autocast_dtype=autocast)
        cfg = GRPOConfig(group_size=len(groups[0].rollouts), max_tokens_per_microbatch=budget)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        metrics = update(cfg, backend, groups, groups)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        row.update(status="ok", seconds=round(seconds, 3),
                   tokens_per_s=round(tokens / seconds, 1), peak_gib=_peak_gib(device),
                   loss=metrics.get("train/loss"), entropy=metrics.get("train/entropy"))
    except torch.OutOfMemoryError as e:
        row.update(status="oom", error=str(e).splitlines()[0][:200], peak_gib=_peak_gib(device))
    finally:
        del model
        backend = None  # drop the optimizer state before the next setting
        _reset_memory(device)
    print(json.dumps(row), flush=True)
    return row


def precision_check(opts, accelerator, device: str, groups) -> dict[str, Any]:
    """Fraction of the weight matrices' entries that one step at lr 1e-6 changes: fp32 master
    weights under bf16 autocast vs a pure-bf16 model (the old full fine-tuning)."""
    out: dict[str, Any] = {}
    small = [RolloutGroup(problem=g.problem, answer=g.answer, rollouts=g.rollouts[:4],
                          advantages_G=g.advantages_G[:4]) for g in groups[:1]]
    for name, (load, autocast) in {"fp32_master": (torch.float32, torch.bfloat16),
                                   "pure_bf16": (torch.bfloat16, None)}.items():
        _reset_memory(device)
        model = build_model(opts.tiny, device, load)
        watch = [n for n, p in model.named_parameters() if p.dim() == 2][:6]
        before = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()
                  if n in watch}
        backend = LocalBackend(model, SimpleNamespace(pad_token_id=0), learning_rate=1e-6,
                               accelerator=accelerator, autocast_dtype=autocast,
                               gradient_checkpointing=device.startswith("cuda"))
        update(GRPOConfig(group_size=4), backend, small, small)
        params = dict(backend.policy.named_parameters())
        moved = sum(int((params[n].detach().float().cpu() != before[n]).sum()) for n in watch)
        total = sum(before[n].numel() for n in watch)
        out[f"{name}_moved_frac"] = round(moved / total, 4)
        del model, backend, params
    out["ok"] = out["fp32_master_moved_frac"] > 0.9 > out["pure_bf16_moved_frac"]
    print(json.dumps({"precision": out}), flush=True)
    return out


def device_check(accelerator, device: str) -> dict[str, Any]:
    from aimo3_recipe.models import rank_device

    saved = os.environ.get("LOCAL_RANK")
    os.environ["LOCAL_RANK"] = "3"
    try:
        mapped = rank_device("cuda")
    finally:
        if saved is None:
            os.environ.pop("LOCAL_RANK")
        else:
            os.environ["LOCAL_RANK"] = saved
    out = {"device": device, "accelerator_device": str(accelerator.device),
           "process_index": accelerator.process_index, "world_size": accelerator.num_processes,
           "local_rank_3_maps_to": mapped, "gpus": torch.cuda.device_count()}
    out["ok"] = mapped == "cuda:3" and (device == str(accelerator.device) or device == "cpu")
    print(json.dumps({"devices": out}), flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU (a smoke test)")
    ap.add_argument("--rollouts", type=int, default=None, help="rollouts in the update")
    ap.add_argument("--length", type=int, default=None, help="tokens per rollout")
    ap.add_argument("--chunk-tokens", type=int, default=1024, help="LM-head chunk")
    ap.add_argument("--budget", type=int, default=8192, help="max_tokens_per_microbatch")
    ap.add_argument("--skip", default="", help="comma list of settings to skip")
    ap.add_argument("--out", default=None, help="JSON file (default $OUT/...)")
    opts = ap.parse_args(argv)
    rollouts = opts.rollouts or (8 if opts.tiny else 16)
    length = opts.length or (48 if opts.tiny else 2048)
    if opts.tiny:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    accelerator, device = rank_setup("cpu" if opts.tiny else "auto")
    vocab = 512 if opts.tiny else 151936
    groups = make_groups(rollouts, length, vocab, prompt=max(4, length // 8),
                         group_size=min(8, rollouts))
    budget = min(opts.budget, rollouts * length // 2) if opts.tiny else opts.budget
    chunk = opts.chunk_tokens
    settings = {  # name: (chunk_tokens, gradient checkpointing, token budget)
        "one_chunk": (ONE_CHUNK, False, 0), "chunked": (chunk, False, 0),
        "chunked_ckpt": (chunk, True, 0), "budget": (chunk, True, budget)}
    skip = set(filter(None, opts.skip.split(",")))
    result: dict[str, Any] = {
        "torch": torch.__version__, "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "model": "tiny" if opts.tiny else "qwen2-shaped ~1.0B, random init",
        "rollouts": rollouts, "length": length,
        "updates": [run_update(name, opts, accelerator, device, copy.deepcopy(groups),
                               chunk_tokens=c, checkpointing=ck, budget=b)
                    for name, (c, ck, b) in settings.items() if name not in skip],
    }
    result["precision"] = precision_check(opts, accelerator, device, groups)
    result["devices"] = device_check(accelerator, device)
    out = opts.out or (str(Path(os.environ["OUT"]) / "gpu_check_training.json")
                       if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
