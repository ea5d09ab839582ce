"""The config of `python -m aimo3_recipe.evaluation.evaluate`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    model: str = "default"  # hub id, local folder, .gguf file or 'default'
    benchmark: str = "math500"  # registry name or a local jsonl/csv/parquet path
    strategy: str = "greedy"  # greedy | majority_vote | weighted_vote | tir | genselect
    num_samples: int = 1  # samples per problem (self-consistency N)
    max_problems: int | None = None  # evaluate only the first N problems
    max_new_tokens: int | None = None  # None: the benchmark's default
    temperature: float = 0.7  # sampling temperature when num_samples > 1
    top_p: float = 0.95  # nucleus sampling
    use_vllm: bool = False  # vLLM engine instead of transformers
    batch_size: int = 8  # prompts per generation batch
    output_dir: str = "./outputs/eval"  # results.json, samples.jsonl, report.md, plots
    seed: int = 0  # sampling seed
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
