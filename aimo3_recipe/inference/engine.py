"""The small interface every generation backend implements (transformers, vLLM, Tinker).

Strategies, the TIR executor, evaluation and RL rollouts only talk to this: batched prompts as
token ids in, `n` completions per prompt out, each with its token ids and per-token log-probs
(weighted voting and RL need them) and why it stopped.

Token ids are the primary input because RL must know exactly the context the sampler saw:
a TIR continuation is prompt ids + sampled ids + tokenised tool output, never a re-tokenised
transcript (whose tokens at the model/tool boundaries may differ from the sampled ones).
Tinker samples from token input too. `generate(texts)` is a thin convenience over the
renderer's `encode_prompt` (`TextPrompts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class SamplingConfig:
    n: int = 1  # completions per prompt
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling
    max_tokens: int = 512  # new tokens per completion
    stop: list[str] = field(default_factory=list)  # stop strings (kept out of the text)
    include_stop_str: bool = False  # append the matched stop string to the text
    seed: int | None = None  # sampling seed (engine-level where per-request seeds fail)
    logprobs: bool = True  # return per-token log-probs of the sampled tokens
    top_logprobs: int = 0  # also the k largest log-probs at each step (token entropy); 0: none


@dataclass
class Completion:
    text: str  # generated text (without the prompt)
    token_ids: list[int]  # generated token ids
    # raw model log-prob of each generated token (before temperature / top-p)
    logprobs: list[float] | None
    finish_reason: str  # "stop" (EOS or stop string), "length" (max_tokens or context window)
    stop_reason: str | None = None  # the stop string matched, if any
    # per generated token, the k largest raw log-probs of its step (SamplingConfig.top_logprobs)
    top_logprobs: list[list[float]] | None = None

    @property
    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(self.logprobs) / len(self.logprobs)

    @property
    def entropies(self) -> list[float] | None:
        """Per-token entropy (nats) from the top-k log-probs, renormalised over those k
        (`solution_selection.topk_entropy`); None when the engine returned no top-k."""
        if self.top_logprobs is None:
            return None
        from aimo3_recipe.inference.solution_selection import topk_entropy

        return [topk_entropy(top) if top else 0.0 for top in self.top_logprobs]


@runtime_checkable
class Engine(Protocol):
    """Anything that can continue prompts. `generate_tokens` takes prompt token ids; the
    result has one list of `config.n` completions per prompt, in order. `generate` does the
    same for rendered prompt texts (chat template applied), encoded with `encode_prompt`.
    Optional: `max_model_len`, the context window (see `context_window`); an engine that
    has one ends a completion there ("length") and rejects a prompt that fills it."""

    tokenizer: object

    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]: ...

    def generate(self, prompts: list[str], config: SamplingConfig) -> list[list[Completion]]: ...


def context_window(engine: object) -> int | None:
    """The engine's context window in tokens (prompt + completion), from its optional
    `max_model_len` attribute (vLLM's and the transformers engine's); None where it knows
    none (Tinker, scripted stand-ins): callers then assume no limit."""
    n = getattr(engine, "max_model_len", None)
    return int(n) if n else None


class TextPrompts:
    """Mixin: `generate(texts)` = `generate_tokens(encode_prompt(text) for each)`, so every
    engine tokenises prompts exactly as the trainer's renderer does."""

    tokenizer: object

    def encode(self, prompt: str) -> list[int]:
        from aimo3_recipe.data.renderers import encode_prompt

        return encode_prompt(self.tokenizer, prompt)

    def generate(self, prompts: list[str], config: SamplingConfig) -> list[list[Completion]]:
        ids = [self.encode(p) for p in prompts]
        return self.generate_tokens(ids, config)  # type: ignore[attr-defined]


@runtime_checkable
class StreamingEngine(Engine, Protocol):
    """An engine with continuous batching (vLLM): a request added while others decode joins
    the running batch, so a TIR continuation does not wait for a whole round to end."""

    def submit(self, request_id: str, prompt_ids: list[int], config: SamplingConfig) -> None:
        """Queue one completion of the prompt `prompt_ids` (config.n is ignored)."""

    def poll(self) -> list[tuple[str, Completion]]:
        """Advance decoding a step; return (request_id, completion) of requests that ended."""

    def has_pending(self) -> bool:
        """Whether submitted requests have not been returned by `poll` yet."""

    def cancel_pending(self) -> None:
        """Abort every submitted request not returned yet."""


def make_engine(model: Any, use_vllm: bool | str = False, *, tokenizer: Any = None,
                device: str | None = None, dtype: str | None = None, seed: int = 0,
                batch_size: int = 32, vllm_config: Any = None, **vllm_kwargs: Any) -> Engine:
    """The engine for a model: vLLM when `use_vllm` is True (raises MissingDependencyError
    with the install line when it is absent), transformers `generate` on `device` when False.
    "auto": vLLM where it is installed and fast here (CUDA, or an x86 CPU with AVX2+:
    utils/hardware.py), else transformers; the choice and its reason are printed once.
    `model` is anything `models.resolve_model_path` takes, or (HF only) a loaded model.
    `vllm_config` (a `VLLMConfig`: TP/DP, quantization, KV cache dtype, memory share, context
    window) and `vllm_kwargs` (passed to `vllm.LLM` as they are) reach vLLM only; on CPU its
    dtype "auto" becomes bfloat16 only where the CPU has native bf16, else float32."""
    from pathlib import Path

    from aimo3_recipe.models import select_device
    from aimo3_recipe.utils.hardware import choose_vllm, parse_use_vllm
    from aimo3_recipe.utils.notice import notice

    auto = parse_use_vllm(use_vllm) == "auto"
    want_vllm, why = choose_vllm(use_vllm, select_device(device) if auto else "")
    if auto and want_vllm and not isinstance(model, (str, Path)):
        want_vllm, why = False, "auto: a loaded model object (vLLM loads from a folder)"
    if want_vllm:
        from aimo3_recipe.exceptions import MissingDependencyError
        from aimo3_recipe.inference.vllm_engine import VLLMEngine

        if vllm_kwargs.get("dtype") is None and dtype not in (None, "auto"):
            vllm_kwargs["dtype"] = dtype
        try:
            engine = VLLMEngine(model, seed=seed, config=vllm_config, **vllm_kwargs)
        except MissingDependencyError as e:
            if not auto:
                raise
            why = f"auto: vLLM is installed but did not import ({e.__cause__ or e})"
        else:
            if auto:
                notice(f"engine: vLLM ({why}); --use-vllm false for transformers")
            return engine
    from aimo3_recipe.inference.hf_engine import HFEngine

    if auto:
        notice(f"engine: transformers ({why})")
    return HFEngine(model, tokenizer, device=device, dtype=dtype, batch_size=batch_size)
