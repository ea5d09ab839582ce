"""Stage 3, the algorithm: GRPO on answer correctness, as small pure functions.

One algorithm for every backend (local torch, Tinker): the loop samples groups of rollouts,
`rewards.score_group` grades them, `advantages.assign_advantages` centres them per group and
drops the groups that carry no signal, `batch.make_batch` pads them, and the backend computes
`logprobs.token_logprobs` + `loss.policy_loss` (or the service computes the same thing).

Files (one concept each):
- `types.py`: `Rollout` (token-exact: prompt ids, tokens, loss mask, sampler log-probs) and
  `RolloutGroup` (one problem's G rollouts with their rewards and advantages).
- `rewards.py`: `MathRewardFunction`, `RewardResult`, `score_group`.
- `advantages.py`: `group_advantages`, `is_informative`, `assign_advantages`.
- `batch.py`: `RLBatch`, `make_batch` (padded tensors for the loss).
- `loss.py`: `policy_loss` (GRPO/DAPO clipped surrogate).
- `logprobs.py`: `token_logprobs` (per-token log-probs and entropy, LM head in chunks).
- `dynamic_sampling.py`: refill a step until `batch_size` groups vary (DAPO), bounded.
- `overlap.py`: rollouts in line (on-policy) or on a thread k steps ahead (off-policy).

Departures from the GRPO paper (DeepSeekMath, Shao et al. 2024) and why:
- Advantage = reward - group mean, NOT divided by the group std (`scale_by_std=False`). With
  the +0.1 format bonus, a group that is all wrong but only partly boxed has std ~0.05, and
  dividing by it turns a format difference into full-size advantages (format hacking). Dr.
  GRPO (Liu et al. 2025) also drops the std for its difficulty bias. `scale_by_std=True`
  gives the paper's (r - mean) / (std + 1e-4) with the sample std, as TRL computes it.
- Groups whose rollouts are all correct or all incorrect are dropped from the loss and
  counted: they carry no correctness signal, and the format bonus alone does not make a group
  informative. With `dynamic_sampling` the step draws more problems until `batch_size` groups
  vary (DAPO's dynamic sampling, bounded by `max_sampling_rounds`; dynamic_sampling.py).
- Optionally off-policy by a fixed k steps (`max_steps_off_policy`, overlap.py): rollouts
  sampled while the previous step trains, corrected by the truncated importance weights.
- Token-level aggregation (DAPO, Yu et al. 2025): the loss is the sum over every trained token
  of the batch divided by their count, not a mean of per-sequence means, so long and short
  completions weigh per token and a long wrong answer is not diluted.
- No KL penalty by default (as DAPO and Dr. GRPO): with verifiable rewards the reference
  model mostly slows learning, and it costs a second forward pass. `rl.loss.beta` > 0 turns
  on the k3 estimator (TRL's, tested against it) against the base model with the LoRA adapter
  off (local backend, LoRA only; the Tinker service has no reference model and refuses it).
- Clip-higher (DAPO): epsilon_low 0.2, epsilon_high 0.28, so rare tokens with positive
  advantage can grow more before clipping (keeps entropy from collapsing).
- Truncated importance sampling (TIS, Yao et al. 2025), optional: when the sampler (vLLM,
  bf16) and the trainer disagree on log-probs, each token's loss is weighted by
  min(exp(trainer_old - sampler), cap), detached.
- Tool-output and forced tokens are masked out of the loss; only sampled tokens are trained.
- Truncated rollouts get the incorrect reward and no format bonus (see `rewards.py`).
"""

from aimo3_recipe.rl.advantages import (
    AdvantageStats,
    assign_advantages,
    group_advantages,
    is_informative,
)
from aimo3_recipe.rl.batch import RLBatch, make_batch
from aimo3_recipe.rl.logprobs import token_logprobs
from aimo3_recipe.rl.loss import policy_loss
from aimo3_recipe.rl.rewards import MathRewardFunction, RewardResult, score_group
from aimo3_recipe.rl.types import TRUNCATED_REASONS, Rollout, RolloutGroup

__all__ = [
    "TRUNCATED_REASONS",
    "AdvantageStats",
    "MathRewardFunction",
    "RLBatch",
    "RewardResult",
    "Rollout",
    "RolloutGroup",
    "assign_advantages",
    "group_advantages",
    "is_informative",
    "make_batch",
    "policy_loss",
    "score_group",
    "token_logprobs",
]
