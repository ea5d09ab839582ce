"""Sampling for RL: problems -> groups of token-exact rollouts, through our engines only.

CoT rollouts are one `engine.generate_tokens` call; TIR rollouts go through `run_tir` (the
same executor evaluation and the solver use), whose sequences and masks already say exactly
what the sampler saw. No second copy of sampling or TIR code lives here.
"""

from __future__ import annotations

from collections.abc import Sequence

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.renderers import encode_prompt, render_prompt
from aimo3_recipe.inference.engine import Engine, SamplingConfig
from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir
from aimo3_recipe.rl.types import Rollout, RolloutGroup


def prompt_ids(tokenizer, problem: str, mode: str) -> list[int]:
    """The exact prompt ids inference uses for `problem` (render_prompt + encode_prompt)."""
    return encode_prompt(tokenizer, render_prompt(tokenizer, problem, mode))


def sample_groups(engine: Engine, records: Sequence[MathRecord], *, mode: str, group_size: int,
                  temperature: float, max_new_tokens: int, max_tool_calls: int = 4,
                  seed: int | None = None, pool=None) -> list[RolloutGroup]:
    """One group of `group_size` rollouts per record (greedy when temperature is 0)."""
    prompts = [prompt_ids(engine.tokenizer, r.problem, mode) for r in records]
    sampling = SamplingConfig(n=group_size, temperature=temperature, max_tokens=max_new_tokens,
                              seed=seed, logprobs=True)
    if mode == "tir":
        tir = TIRConfig(max_tool_calls=max_tool_calls, max_new_tokens=max_new_tokens)
        results = run_tir(engine, prompts, sampling, tir, pool=pool)
        rollouts = [[Rollout.from_tir(r) for r in group] for group in results]
    else:
        outs = engine.generate_tokens(prompts, sampling)
        rollouts = [[_from_completion(p, c) for c in group] for p, group in zip(prompts, outs)]
    return [RolloutGroup(problem=rec.problem, answer=str(rec.answer), rollouts=rs)
            for rec, rs in zip(records, rollouts)]


def _from_completion(prompt: list[int], c) -> Rollout:
    if c.logprobs is None:
        raise ValueError("RL needs the sampler's log-probs; the engine returned none")
    return Rollout(prompt_ids=list(prompt), tokens=list(c.token_ids), mask=[1] * len(c.token_ids),
                   sampler_logprobs=list(c.logprobs), text=c.text, model_text=c.text,
                   finish_reason=c.finish_reason)
