"""The GRPO/DAPO policy loss over a padded batch, and the per-token log-probs it needs.

`policy_loss` is TRL's `GRPOTrainer._compute_loss` with `loss_type="dapo"` written as a pure
function (tests/test_rl_trl_agreement.py checks they agree to 1e-6):

    ratio_t  = exp(logp_t - old_logp_t)
    loss_t   = -min(ratio_t * A, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A)
    loss_t  *= min(exp(old_logp_t - sampler_logp_t), tis_cap)      (TIS, optional, detached)
    loss_t  += beta * ratio_t * (exp(ref_t - logp_t) - (ref_t - logp_t) - 1)   (KL, optional)
    loss     = sum_{b,t} mask_bt * loss_t / num_tokens        (token-level, DAPO)

Shapes: `_B_T` is batch x tokens (any layout, as long as every tensor uses the same one and
`mask_B_T` is 1 exactly on the tokens to train); `advantages_B` one per sequence.

`num_tokens` defaults to the mask's sum. When one optimizer step accumulates several
micro-batches, pass the token count of the whole step to each call, so the sum of the
micro-batch losses equals the loss of the whole batch; under DDP (which averages gradients
over ranks) pass the global count divided by the world size, as TRL does.

The settings come from `rl.loss` (rl/config.py: `LossConfig`), the one place their defaults
are written; `loss_args` turns that section into this function's keywords, for both backends.
The per-token log-probs it takes come from `rl/logprobs.py` (`token_logprobs`, re-exported
here): chunked through the LM head so no batch x length x vocab tensor exists.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aimo3_recipe.rl.config import LossConfig
from aimo3_recipe.rl.logprobs import token_logprobs

__all__ = ["clipped_surrogate", "k3_kl", "loss_args", "masked_mean", "old_logprobs_for",
           "policy_loss", "tis_weights", "token_logprobs"]


def clipped_surrogate(
    ratio_B_T: torch.Tensor, advantages_B_1: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> torch.Tensor:
    """PPO's pessimistic per-token loss -min(r A, clip(r) A), clip-higher bounds (DAPO)."""
    clipped = torch.clamp(ratio_B_T, 1 - epsilon_low, 1 + epsilon_high)
    return -torch.min(ratio_B_T * advantages_B_1, clipped * advantages_B_1)


def k3_kl(logprobs_B_T: torch.Tensor, ref_logprobs_B_T: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || ref) per token: exp(d) - d - 1 with
    d = ref - logp. Non-negative, and unbiased when the tokens were sampled from the policy."""
    d = ref_logprobs_B_T - logprobs_B_T
    return torch.exp(d) - d - 1


def tis_weights(
    old_logprobs_B_T: torch.Tensor, sampler_logprobs_B_T: torch.Tensor, cap: float
) -> torch.Tensor:
    """Truncated importance weights min(exp(trainer - sampler), cap), detached: correct for
    the sampler (vLLM, bf16) being a slightly different policy from the trainer."""
    return torch.clamp(torch.exp(old_logprobs_B_T - sampler_logprobs_B_T), max=cap).detach()


def masked_mean(x_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (0 when the mask is empty)."""
    return (x_B_T * mask_B_T).sum() / mask_B_T.sum().clamp(min=1)


def _check_shapes(mask_B_T: torch.Tensor, **tensors: torch.Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and t.shape != mask_B_T.shape:
            raise ValueError(
                f"policy_loss: {name} has shape {tuple(t.shape)} but mask_B_T has "
                f"{tuple(mask_B_T.shape)}; every per-token tensor must use the same layout"
            )


def _zero_outside(x_B_T: torch.Tensor, keep_B_T: torch.Tensor) -> torch.Tensor:
    return torch.where(keep_B_T, x_B_T, torch.zeros_like(x_B_T))


def policy_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor | None,
    advantages_B: torch.Tensor,
    mask_B_T: torch.Tensor,
    *,
    epsilon_low: float = LossConfig.epsilon_low,
    epsilon_high: float = LossConfig.epsilon_high,
    beta: float = LossConfig.beta,
    ref_logprobs_B_T: torch.Tensor | None = None,
    kl_importance_weighted: bool = True,
    sampler_logprobs_B_T: torch.Tensor | None = None,
    tis_cap: float | None = None,
    entropy_B_T: torch.Tensor | None = None,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to backpropagate (a scalar) and a metrics dict, for one (micro-)batch.

    logprobs_B_T: the trainer's log-probs now (with grad). old_logprobs_B_T: the policy the
    ratio is taken against (the trainer's before this step's updates); None means on-policy,
    old = logprobs.detach() (one PPO epoch: ratio 1, TRL's shortcut). sampler_logprobs_B_T:
    the sampler's, for the gap metric and TIS (`tis_cap` set). ref_logprobs_B_T: needed when
    beta > 0; the KL term is weighted by the (non-detached) ratio, TRL's
    `use_bias_correction_kl`, so its gradient is that of KL(policy || ref) even off-policy.
    entropy_B_T (optional) is only logged. See the module docstring for num_tokens."""
    old = logprobs_B_T.detach() if old_logprobs_B_T is None else old_logprobs_B_T
    _check_shapes(mask_B_T, logprobs_B_T=logprobs_B_T, old_logprobs_B_T=old,
                  ref_logprobs_B_T=ref_logprobs_B_T, sampler_logprobs_B_T=sampler_logprobs_B_T,
                  entropy_B_T=entropy_B_T)
    if beta != 0.0 and ref_logprobs_B_T is None:
        raise ValueError("policy_loss: beta != 0 needs ref_logprobs_B_T (the reference model's)")
    if tis_cap is not None and sampler_logprobs_B_T is None:
        raise ValueError("policy_loss: tis_cap is set but sampler_logprobs_B_T is None")
    mask = mask_B_T.to(logprobs_B_T.dtype)
    # Masked positions may hold anything (padding, -inf from a sampler): zero them before exp,
    # since inf * 0 is NaN in the loss and 0 * inf is NaN in the gradient.
    keep = mask_B_T.bool()
    logprobs_B_T = _zero_outside(logprobs_B_T, keep)
    old = _zero_outside(old, keep)
    if ref_logprobs_B_T is not None:
        ref_logprobs_B_T = _zero_outside(ref_logprobs_B_T, keep)
    if sampler_logprobs_B_T is not None:
        sampler_logprobs_B_T = _zero_outside(sampler_logprobs_B_T, keep)
    if entropy_B_T is not None:
        entropy_B_T = _zero_outside(entropy_B_T, keep)
    adv_B_1 = advantages_B.reshape(-1, 1).to(logprobs_B_T.dtype)
    if adv_B_1.shape[0] != mask.shape[0]:
        raise ValueError(
            f"policy_loss: {adv_B_1.shape[0]} advantages for a batch of {mask.shape[0]} sequences"
        )

    ratio = torch.exp(logprobs_B_T - old)
    per_token = clipped_surrogate(ratio, adv_B_1, epsilon_low, epsilon_high)
    if tis_cap is not None and sampler_logprobs_B_T is not None:
        per_token = per_token * tis_weights(old, sampler_logprobs_B_T, tis_cap)
    kl = None
    if beta != 0.0 and ref_logprobs_B_T is not None:
        kl = k3_kl(logprobs_B_T, ref_logprobs_B_T)
        if kl_importance_weighted:  # tokens came from the old policy: estimate KL under the new
            kl = kl * ratio
        per_token = per_token + beta * kl

    denom = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
    loss = (per_token * mask).sum() / denom
    metrics = _loss_metrics(loss, ratio, adv_B_1, mask, epsilon_low, epsilon_high, kl=kl,
                            old=old, sampler=sampler_logprobs_B_T, tis_cap=tis_cap,
                            entropy=entropy_B_T)
    return loss, metrics


def loss_args(loss: LossConfig) -> dict[str, Any]:
    """`policy_loss`'s keywords from the `rl.loss` section: no clip is an infinite range, a
    TIS cap of 0 is none. (`ratio_against` and the reference log-probs are the backend's: they
    choose the tensors, not the formula.)"""
    eps_low, eps_high = (loss.epsilon_low, loss.epsilon_high) if loss.clip else (math.inf,
                                                                                math.inf)
    return {"epsilon_low": eps_low, "epsilon_high": eps_high, "beta": loss.beta,
            "tis_cap": loss.tis_cap or None}


def old_logprobs_for(loss: LossConfig, old_logprobs_B_T: torch.Tensor | None,
                     sampler_logprobs_B_T: torch.Tensor) -> torch.Tensor | None:
    """The ratio's denominator: the trainer's before the step's updates when given (later
    PPO epochs, mini-batches); on-policy, None (the trainer's now: ratio 1) or the sampler's,
    as `loss.ratio_against` says."""
    if old_logprobs_B_T is not None or loss.ratio_against == "trainer":
        return old_logprobs_B_T
    return sampler_logprobs_B_T


@torch.no_grad()
def _loss_metrics(
    loss: torch.Tensor,
    ratio: torch.Tensor,
    adv_B_1: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    *,
    kl: torch.Tensor | None,
    old: torch.Tensor,
    sampler: torch.Tensor | None,
    tis_cap: float | None,
    entropy: torch.Tensor | None,
) -> dict[str, float]:
    """Token-weighted means over the trained tokens. Clip fractions count only tokens where
    the clip changes the loss (ratio past the bound on the side the advantage pushes it)."""
    low = ((ratio < 1 - epsilon_low) & (adv_B_1 < 0)).to(mask.dtype)
    high = ((ratio > 1 + epsilon_high) & (adv_B_1 > 0)).to(mask.dtype)
    out = {
        "train/loss": loss.item(),
        "train/num_tokens": mask.sum().item(),
        "train/ratio_mean": masked_mean(ratio, mask).item(),
        "train/clip_frac_low": masked_mean(low, mask).item(),
        "train/clip_frac_high": masked_mean(high, mask).item(),
    }
    if kl is not None:  # the (importance-weighted) k3 estimate, as TRL logs it
        out["train/kl"] = masked_mean(kl, mask).item()
    if sampler is not None:
        out["train/sampler_logprob_gap"] = masked_mean((old - sampler).abs(), mask).item()
        if tis_cap is not None:
            w = torch.exp(old - sampler)
            out["train/tis_weight_mean"] = masked_mean(torch.clamp(w, max=tis_cap), mask).item()
            out["train/tis_capped_frac"] = masked_mean((w > tis_cap).to(mask.dtype), mask).item()
    if entropy is not None:
        out["train/entropy"] = masked_mean(entropy.detach(), mask).item()
    return out
