"""The competition solver's one config: model and engine, attempts, time rule, selection, log.

Defaults are the public recipe (8 attempts, stop at 4 agreeing, 1 / mean token entropy as
the vote weight, the 300/900 s time rule within 17,400 s), sized for an H100 with a large
reasoning model; the CPU demo and tests override the token and time limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.aimo.budget import TimeRule
from aimo3_recipe.inference.aimo.prompts import PROMPT_FORMATS
from aimo3_recipe.inference.solution_selection import SELECTION_STRATEGIES
from aimo3_recipe.inference.vllm_config import VLLMConfig, check_vllm_config

SOLVER_SELECTIONS = ("majority_vote", "weighted_vote", "vote_score", "genselect")


@dataclass
class SolverConfig(TimeRule, VLLMConfig):
    """The vLLM engine group (inference/vllm_config.py) is inherited: tensor_parallel_size
    (4 on 4xL4 with a 14B model), quantization (fp8, or an AWQ/GPTQ checkpoint's), data
    parallelism, kv_cache_dtype (fp8: the public solutions' choice), enable_sleep_mode; its
    context and memory defaults are the solver's own."""

    model_name_or_path: str = "default"  # 'default' (embedded SmolLM2-135M), folder, hub id
    use_vllm: bool | str = "auto"  # auto (vLLM where installed and fast here) | true | false
    max_model_len: int | None = 65536  # vLLM context length (prompt + attempt)
    gpu_memory_utilization: float = 0.9  # vLLM, CUDA only
    prompt_format: str = "chatml"  # chatml (the tokenizer's chat template) | harmony (gpt-oss)
    reasoning_effort: str = "high"  # harmony only: low | medium | high
    num_attempts: int = 8  # attempts per problem, run concurrently
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0  # nucleus sampling
    max_tokens: int = 32768  # model tokens per attempt, all TIR turns together
    max_tool_calls: int = 16  # python blocks executed per attempt
    cell_timeout_s: float = 6.0  # wall clock per python cell
    sandbox_sessions: int = 16  # cells that may run at once (the pool's size)
    top_logprobs: int = 5  # top-k log-probs per token, for the entropy weight (0: none)
    early_stop_k: int = 4  # stop once this many attempts agree (0: off)
    early_stop_runner_up: bool = True  # stop once the runner-up cannot catch up
    selection: str = "weighted_vote"  # majority_vote | weighted_vote | vote_score | genselect
    entropy_tail: int = 0  # entropy over the last N tokens of an attempt (0: all of them)
    entropy_reduce: str = "mean"  # mean | median token entropy of an attempt
    vote_confidence: float = 0.1  # vote_score: weight of the confidence term
    vote_consensus: float = 0.05  # vote_score: weight of the consensus term
    genselect_max_tokens: int = 2048  # genselect: tokens of the judge's answer
    fallback_answer: int = 0  # the answer when no attempt has a valid one (counted)
    seed: int | None = None  # sampling seed (None: fresh draws; vLLM on CPU: engine seed)
    log_dir: str | None = None  # JSONL log per problem + summary here (None: no files)
    log_text: bool = True  # keep each attempt's transcript in the log

    def __post_init__(self) -> None:
        super().__post_init__()
        check_vllm_config(self)
        if self.num_attempts < 1:
            raise ConfigError(f"num_attempts must be >= 1; got {self.num_attempts}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1; got {self.max_tokens}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"prompt_format must be one of {PROMPT_FORMATS}; "
                              f"got {self.prompt_format!r}")
        if self.selection not in SOLVER_SELECTIONS or self.selection not in SELECTION_STRATEGIES:
            raise ConfigError(f"selection must be one of {SOLVER_SELECTIONS}; "
                              f"got {self.selection!r}")
        if self.entropy_reduce not in ("mean", "median"):
            raise ConfigError(f"entropy_reduce must be mean or median; "
                              f"got {self.entropy_reduce!r}")
        if self.early_stop_k < 0 or self.entropy_tail < 0 or self.top_logprobs < 0:
            raise ConfigError("early_stop_k, entropy_tail and top_logprobs must be >= 0")
        if not 0 <= self.fallback_answer <= 99999:
            raise ConfigError(f"fallback_answer must be in 0..99999; got {self.fallback_answer}")
