"""Our GRPO loss agrees with TRL's on the same batch, through TRL's real code path.

A `GRPOTrainer` (trl 1.16) is built offline on a tiny random model with `loss_type="dapo"`,
epsilon 0.2 / epsilon_high 0.28 and no reward scaling, and its `_compute_loss(model, inputs)`
is called on a hand-built `inputs` dict (left-padded prompts, completions with padding and
tool tokens, mixed-sign advantages, old log-probs off by up to ~0.4 so tokens clip on both
sides). TRL scores the tokens with its fused LM head; we score them with
`rl.token_logprobs` on the same model and call `rl.policy_loss`. Loss, every parameter's
gradient and the clip/entropy/KL metrics must agree to 1e-6.

Cases: the default (beta 0), the KL term (beta 0.04, TRL's `use_bias_correction_kl`), and
TIS. For TIS the importance ratio is built by us, with TRL's formula for
`vllm_importance_sampling_mode="token_truncate"` (grpo_trainer.py, `_generate_and_score_
completions`: clamp(exp(old - sampler), max=cap)), because TRL computes it inline during
generation, which needs a vLLM server; the multiplication into the loss is TRL's own code.
The trainer is built once (TRL's import is most of the ~10 s); cases switch its attributes.
"""

from __future__ import annotations

import pytest
import torch

from aimo3_recipe.rl import policy_loss, token_logprobs

trl = pytest.importorskip("trl")

TEMPERATURE = 0.7
B, P, C = 4, 5, 7  # sequences, prompt length (left-padded), completion length (right-padded)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from datasets import Dataset

    from aimo3_recipe.testing import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok).float()
    args = trl.GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl-grpo")), loss_type="dapo", epsilon=0.2,
        epsilon_high=0.28, beta=0.0, scale_rewards="none", temperature=TEMPERATURE,
        per_device_train_batch_size=B, num_generations=2, max_completion_length=C,
        gradient_accumulation_steps=1, report_to="none", use_cpu=True, bf16=False,
        gradient_checkpointing=False,
    )
    trainer = trl.GRPOTrainer(
        model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
        args=args, train_dataset=Dataset.from_dict({"prompt": ["What is 1 + 1?"] * 4}),
        processing_class=tok,
    )
    # set by transformers' training loop before each step; we call _compute_loss outside it.
    # With 1 accumulation step and 1 step per generation, TRL's DAPO normaliser is exactly
    # num_items_in_batch, our default num_tokens.
    trainer.current_gradient_accumulation_steps = args.gradient_accumulation_steps
    assert args.steps_per_generation == 1
    return trainer


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, 300, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding, as TRL pads prompts
    prompt_ids[1, :2] = 0
    completion_ids = torch.randint(3, 300, (B, C), generator=g)
    completion_mask = torch.ones(B, C, dtype=torch.long)
    completion_mask[2, 4:] = 0  # ended early: padding after EOS
    completion_mask[3, 6:] = 0
    tool_mask = torch.ones(B, C, dtype=torch.long)
    tool_mask[0, 2:4] = 0  # tool output inside the completion: attended, not trained
    return {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "tool_mask": tool_mask,
        "advantages": torch.tensor([0.8, -0.7, 0.35, -0.45]),
        "num_items_in_batch": (completion_mask * tool_mask).sum(),
    }


def _ours_logprobs(model, inputs):
    """Our per-token log-probs and entropies on the completion columns (B, C)."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    mask_c = (inputs["completion_mask"] * inputs["tool_mask"]).float()
    loss_mask = torch.cat([torch.zeros(B, P), mask_c], dim=1)
    lp, ent = token_logprobs(model, ids, attn, loss_mask, temperature=TEMPERATURE,
                             compute_entropy=True)
    return lp[:, P:], ent[:, P:], mask_c


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _run_both(trainer, inputs, **ours_kw):
    model = trainer.model
    model.train()
    trainer._metrics["train"].clear()
    model.zero_grad()
    trl_loss = trainer._compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = _grads(model)
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    model.zero_grad()
    lp, ent, mask = _ours_logprobs(model, inputs)
    ours, metrics = policy_loss(lp, inputs["old_per_token_logps"], inputs["advantages"], mask,
                                entropy_B_T=ent, **ours_kw)
    ours.backward()
    our_grads = _grads(model)
    assert len(our_grads) == len(trl_grads) > 0
    torch.testing.assert_close(ours.detach(), trl_loss.detach(), atol=1e-6, rtol=1e-6)
    for a, b in zip(our_grads, trl_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert metrics["train/clip_frac_low"] == pytest.approx(trl_metrics["clip_ratio/low_mean"], abs=1e-6)
    assert metrics["train/clip_frac_high"] == pytest.approx(trl_metrics["clip_ratio/high_mean"], abs=1e-6)
    assert metrics["train/entropy"] == pytest.approx(trl_metrics["entropy"], abs=1e-5)
    return ours.item(), metrics, trl_metrics


def _old_logprobs(trainer, inputs, seed: int = 1) -> torch.Tensor:
    """The current log-probs, moved by up to +-0.4: ratios ~0.67..1.5, clipping both sides."""
    with torch.no_grad():
        lp, _, _ = _ours_logprobs(trainer.model, inputs)
    g = torch.Generator().manual_seed(seed)
    return lp + (torch.rand(lp.shape, generator=g) - 0.5) * 0.8


def test_dapo_loss_agrees_with_trl(trainer):
    inputs = _inputs()
    inputs["old_per_token_logps"] = _old_logprobs(trainer, inputs)
    _, metrics, _ = _run_both(trainer, inputs)
    # the batch exercises both clips, or the agreement would prove less than it seems
    assert metrics["train/clip_frac_low"] > 0 and metrics["train/clip_frac_high"] > 0


def test_kl_term_agrees_with_trl(trainer, monkeypatch):
    inputs = _inputs(seed=2)
    inputs["old_per_token_logps"] = _old_logprobs(trainer, inputs, seed=3)
    g = torch.Generator().manual_seed(4)
    inputs["ref_per_token_logps"] = inputs["old_per_token_logps"] + torch.randn(B, C, generator=g) * 0.3
    monkeypatch.setattr(trainer, "beta", 0.04)
    assert trainer.args.use_bias_correction_kl  # TRL's default, which we follow
    _, metrics, trl_metrics = _run_both(trainer, inputs, beta=0.04,
                                        ref_logprobs_B_T=inputs["ref_per_token_logps"])
    assert metrics["train/kl"] == pytest.approx(trl_metrics["kl"], abs=1e-6)


def test_truncated_importance_sampling_agrees_with_trl(trainer, monkeypatch):
    cap = 1.2
    inputs = _inputs(seed=5)
    inputs["old_per_token_logps"] = _old_logprobs(trainer, inputs, seed=6)
    g = torch.Generator().manual_seed(7)
    sampler = inputs["old_per_token_logps"] + (torch.rand(B, C, generator=g) - 0.5) * 0.6
    # TRL's token_truncate ratio (clip_min None), as _generate_and_score_completions builds it
    inputs["importance_sampling_ratio"] = torch.clamp(
        torch.exp(inputs["old_per_token_logps"] - sampler), max=cap)
    monkeypatch.setattr(trainer, "use_vllm", True)
    monkeypatch.setattr(trainer, "vllm_importance_sampling_correction", True)
    _, metrics, _ = _run_both(trainer, inputs, sampler_logprobs_B_T=sampler, tis_cap=cap)
    assert 0 < metrics["train/tis_capped_frac"] < 1
