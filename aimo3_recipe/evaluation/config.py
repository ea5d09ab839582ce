"""The config of `python -m aimo3_recipe.evaluation.evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, field

# one list of strategy names, owned by the inference layer
from aimo3_recipe.inference.strategies import STRATEGIES  # noqa: F401
from aimo3_recipe.inference.vllm_config import VLLMConfig, check_vllm_config


@dataclass
class EvalConfig(VLLMConfig):
    """`aimo3 eval`. The vLLM engine group (inference/vllm_config.py) is inherited:
    tensor_parallel_size, data_parallel_size, quantization, kv_cache_dtype,
    gpu_memory_utilization, max_model_len (None: max(4096, tokens + 2048)), enable_sleep_mode."""

    model: str = "default"  # hub id, local folder, .gguf file or 'default'
    benchmark: str = "math500"  # registry name or a local jsonl/csv/parquet path
    strategy: str = "greedy"  # greedy | majority_vote | weighted_vote | tir | genselect
    num_samples: int = 1  # samples per problem (self-consistency N)
    max_problems: int | None = None  # evaluate only the first N problems
    max_new_tokens: int | None = None  # None: the benchmark's default
    temperature: float = 0.7  # temperature of the sampled pass (the greedy pass uses 0)
    top_p: float = 0.95  # nucleus sampling
    use_vllm: bool | str = "auto"  # auto (vLLM where installed and fast here) | true | false
    batch_size: int = 8  # prompts per generation batch
    output_dir: str = "./outputs/eval"  # results.json, samples.jsonl, report.md, plots
    seed: int = 0  # sampling seed
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    data_file: str | None = None  # local file for the benchmark (no hub needed)
    data_dir: str | None = None  # folder of local benchmark files (default $AIMO3_DATA_DIR)
    include_greedy: bool = True  # also one greedy completion per problem (Greedy column)
    resume: bool = True  # continue from output_dir/samples.jsonl when it exists
    pass_k: list[int] = field(default_factory=list)  # k values for pass@k/maj@k (default 1,2,4..N)
    confidence: float = 0.95  # level of the reported confidence intervals
    bootstrap_resamples: int = 1000  # resamples for bootstrap intervals of averaged scores
    grade_timeout: float = 2.0  # seconds per answer comparison before it counts as wrong
    regrade: bool = False  # grade the stored completions again with the current grader
    tir_max_calls: int = 4  # code executions per TIR completion
    mode: str | None = None  # prompts of every pass: cot | tir (None: benchmark.s; --strategy tir: tir)
    progress: bool | None = None  # progress bar; None: only when stderr is a terminal

    def __post_init__(self) -> None:
        from aimo3_recipe.utils.hardware import parse_use_vllm

        check_vllm_config(self)
        self.use_vllm = parse_use_vllm(self.use_vllm)  # True | False | "auto"; else an error
