"""Unit tests of the RL algorithm's pure parts (aimo3_recipe/rl/), on numbers computed by
hand: the reward, group advantages, the GRPO/DAPO loss (aggregation, clipping, masks, KL,
TIS), the padded batch and the per-token log-probs. CPU, well under a second each."""

from __future__ import annotations

import math

import pytest
import torch

from aimo3_recipe.grader import Verdict
from aimo3_recipe.rl import (
    MathRewardFunction,
    Rollout,
    RolloutGroup,
    assign_advantages,
    group_advantages,
    is_informative,
    make_batch,
    policy_loss,
    score_group,
    token_logprobs,
)
from aimo3_recipe.rl import rewards as rewards_mod
from aimo3_recipe.rl.batch import flatten_groups

LN = math.log


def rollout(model_text: str, finish_reason: str = "stop", *, text: str | None = None,
            prompt: list[int] | None = None, tokens: list[int] | None = None,
            mask: list[int] | None = None, logprobs: list[float] | None = None) -> Rollout:
    tokens = tokens if tokens is not None else [5, 6]
    return Rollout(prompt_ids=prompt if prompt is not None else [1, 2], tokens=tokens,
                   mask=mask if mask is not None else [1] * len(tokens),
                   sampler_logprobs=logprobs if logprobs is not None else [-0.5] * len(tokens),
                   text=text if text is not None else model_text, model_text=model_text,
                   finish_reason=finish_reason)


# ---------------------------------------------------------------- reward


@pytest.fixture
def reward_fn() -> MathRewardFunction:
    return MathRewardFunction()


def test_reward_correct_boxed_gets_format_bonus(reward_fn):
    r = reward_fn("12 + 35 = 47, so the answer is \\boxed{47}.", "47")
    assert (r.reward, r.correct, r.boxed, r.extracted, r.grader_status) == (
        pytest.approx(1.1), True, True, "47", "ok")


def test_reward_table(reward_fn):
    assert reward_fn("The answer is 47.", "47").reward == pytest.approx(1.0)  # right, no box
    assert reward_fn("So \\boxed{46}.", "47").reward == pytest.approx(-0.4)  # wrong, boxed
    assert reward_fn("I do not know.", "47").reward == pytest.approx(-0.5)  # no answer at all
    unclosed = reward_fn("So \\boxed{47", "47")  # an unclosed box is no answer and no format
    assert (unclosed.reward, unclosed.boxed, unclosed.extracted) == (pytest.approx(-0.5), False, None)


def test_reward_values_are_configurable():
    fn = MathRewardFunction(correct_reward=2.0, incorrect_reward=0.0, format_reward=0.5)
    assert fn("\\boxed{3}", "3").reward == pytest.approx(2.5)
    assert fn("\\boxed{4}", "3").reward == pytest.approx(0.5)


def test_box_only_in_tool_output_earns_nothing(reward_fn):
    """The sandbox printed the box; the model never wrote one. Grading the full transcript
    would pay 1.1, grading the model's text pays nothing."""
    model_part1 = "Let me compute.\n```python\nprint('\\\\boxed{' + str(40 + 7) + '}')\n```\n"
    tool_part = "```output\n\\boxed{47}\n```\n"
    model_part2 = "That settles it."
    transcript = model_part1 + tool_part + model_part2
    assert reward_fn(transcript, "47").reward == pytest.approx(1.1)  # the leak we prevent
    r = reward_fn(model_part1 + model_part2, "47")
    assert (r.reward, r.correct, r.boxed) == (pytest.approx(-0.5), False, False)


def test_box_inside_python_code_earns_nothing(reward_fn):
    """A box the model writes inside its code is not its answer, and would otherwise pay the
    format bonus through a box whose content is code."""
    fstring = "```python\nx = 47\nprint(f\"\\\\boxed{{{x}}}\")\n```\n"
    assert reward_fn(fstring, "47").reward == pytest.approx(-0.5)
    literal = "```python\nprint(r'\\boxed{47}')\n```\n"
    assert reward_fn(literal, "47").reward == pytest.approx(-0.5)
    cut_off = "Now code:\n```python\nprint(r'\\boxed{47}')"  # unclosed block to the end
    assert reward_fn(cut_off, "47").boxed is False
    after_code = fstring + "```output\n47\n```\nSo the answer is \\boxed{47}."
    assert reward_fn(after_code, "47").reward == pytest.approx(1.1)  # prose after code counts


def test_grader_timeout_is_incorrect_and_reported(reward_fn, monkeypatch):
    monkeypatch.setattr(rewards_mod, "verify", lambda *a, **k: Verdict(False, "timeout"))
    r = reward_fn("\\boxed{\\sqrt{2}^{1000}}", "2^{500}")
    assert (r.correct, r.grader_status) == (False, "timeout")
    assert r.reward == pytest.approx(-0.4)  # incorrect, still boxed
    assert reward_fn.status_counts["timeout"] == 1


def test_truncated_gets_incorrect_reward_and_no_format_bonus(reward_fn):
    r = reward_fn("\\boxed{47} and then on and on", "47", truncated=True)
    assert (r.reward, r.correct, r.boxed, r.grader_status, r.truncated) == (
        pytest.approx(-0.5), False, False, "skipped", True)
    assert r.extracted == "47"  # still shown in samples.jsonl


def test_custom_verifier_status_ok_and_error_counted():
    fn = MathRewardFunction(answer_verifier=lambda pred, ref: pred.strip() == ref)
    r = fn("\\boxed{ 7 }", "7")
    assert (r.correct, r.grader_status, r.reward) == (True, "ok", pytest.approx(1.1))

    def broken(pred: str, ref: str) -> bool:
        raise RuntimeError("bug in a user verifier")

    fn = MathRewardFunction(answer_verifier=broken)
    r = fn("\\boxed{7}", "7")
    assert (r.correct, r.grader_status, r.reward) == (False, "error", pytest.approx(-0.4))
    assert fn.status_counts == {"error": 1}


def test_aimo_mode_passes_problem_to_grader():
    problem = "Let N = 2^{10}. What is the remainder when N is divided by 7?"
    assert MathRewardFunction(aimo=True)("\\boxed{1024}", "2", problem=problem).correct
    assert not MathRewardFunction(aimo=False)("\\boxed{1024}", "2", problem=problem).correct


def test_score_group_fills_lists(reward_fn):
    group = RolloutGroup("What is 40 + 7?", "47", [
        rollout("\\boxed{47}"), rollout("The answer is 47."), rollout("\\boxed{46}"),
        rollout("\\boxed{47}", finish_reason="length"),
    ])
    score_group(group, reward_fn)
    assert group.rewards_G == pytest.approx([1.1, 1.0, -0.4, -0.5])
    assert group.correct_G == [True, True, False, False]
    assert group.boxed_G == [True, False, True, False]
    assert group.extracted_G == ["47", "47", "46", "47"]
    assert group.grader_status_G == ["ok", "ok", "ok", "skipped"]


# ---------------------------------------------------------------- rollout types


def test_rollout_rejects_misaligned_logprobs():
    with pytest.raises(ValueError, match="one entry per token"):
        Rollout([1], [2, 3], [1, 1], [-0.1], "t", "t")


def test_rollout_from_tir_result():
    class FakeTIR:  # the fields of inference.tir_executor.TIRResult that matter
        prompt_ids, token_ids, mask, logprobs = [1], [2, 3, 4], [1, 0, 1], [-0.1, 0.0, -0.2]
        text, model_text, finish_reason = "ab", "a", "max_rounds"
        num_code_calls, num_code_errors = 1, 1

    r = Rollout.from_tir(FakeTIR())
    assert (r.tokens, r.mask, r.num_model_tokens, r.truncated) == ([2, 3, 4], [1, 0, 1], 2, True)
    FakeTIR.logprobs = None
    with pytest.raises(ValueError, match="logprobs=True"):
        Rollout.from_tir(FakeTIR())


# ---------------------------------------------------------------- advantages


def test_advantage_is_reward_minus_group_mean():
    # mean = (1.1 - 0.4 - 0.5 + 1.0) / 4 = 0.3
    assert group_advantages([1.1, -0.4, -0.5, 1.0]) == pytest.approx([0.8, -0.7, -0.8, 0.7])


def test_advantage_std_option_uses_sample_std():
    # centred [0.5, -0.5]; sample std sqrt((0.25 + 0.25) / 1) = 0.70711
    adv = group_advantages([1.0, 0.0], scale_by_std=True)
    assert adv == pytest.approx([0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)])
    assert group_advantages([1.0], scale_by_std=True) == [0.0]


def test_std_scaling_turns_the_format_bonus_into_full_advantages():
    """Why std scaling is off: all wrong, half boxed. Centred the format difference is
    +-0.05; divided by its std (0.0577) it becomes +-0.866, as large as a correct answer's."""
    rewards = [-0.4, -0.5, -0.4, -0.5]
    assert group_advantages(rewards) == pytest.approx([0.05, -0.05, 0.05, -0.05])
    std = math.sqrt(4 * 0.05**2 / 3)
    assert group_advantages(rewards, scale_by_std=True)[0] == pytest.approx(0.05 / (std + 1e-4))
    assert group_advantages(rewards, scale_by_std=True)[0] > 0.86


def _scored(correct: list[bool], rewards: list[float]) -> RolloutGroup:
    g = RolloutGroup("p", "1", [rollout("x") for _ in correct])
    g.correct_G, g.rewards_G = correct, rewards
    return g


def test_zero_variance_groups_are_dropped_and_counted():
    informative = _scored([True, False], [1.1, -0.5])
    format_only = _scored([False, False], [-0.4, -0.5])  # rewards vary, correctness does not
    too_easy = _scored([True, True], [1.1, 1.1])
    assert not is_informative(format_only.correct_G)
    kept, stats = assign_advantages([informative, format_only, too_easy])
    assert kept == [informative]
    assert informative.advantages_G == pytest.approx([0.8, -0.8])
    assert format_only.advantages_G == [0.0, 0.0] and not format_only.informative
    assert too_easy.advantages_G == [0.0, 0.0]
    assert (stats.num_groups, stats.num_dropped, stats.num_all_correct, stats.num_all_wrong) == (3, 2, 1, 1)
    assert stats.metrics()["groups/frac_zero_variance"] == pytest.approx(2 / 3)


def test_dropping_can_be_switched_off_and_is_still_counted():
    format_only = _scored([False, False], [-0.4, -0.5])
    kept, stats = assign_advantages([format_only], drop_uninformative=False)
    assert kept == [format_only] and format_only.advantages_G == pytest.approx([0.05, -0.05])
    assert (stats.num_dropped, stats.num_zero_variance) == (0, 1)


def test_assign_advantages_needs_scored_groups():
    with pytest.raises(ValueError, match="score_group"):
        assign_advantages([RolloutGroup("p", "1", [rollout("x")])])


# ---------------------------------------------------------------- loss


def _lp(ratios: list[list[float]]) -> torch.Tensor:
    return torch.tensor([[LN(r) for r in row] for row in ratios], requires_grad=True)


def test_loss_clips_high_with_positive_and_low_with_negative_advantage():
    """Row 0 (A = +1): ratios 1.5 (> 1.28: clipped to 1.28), 1.0, 0.9.
    Row 1 (A = -1): ratios 0.5 (< 0.8: clipped to 0.8), 1.1, and a padded token.
    Per token -min(rA, clip(r)A): -1.28, -1.0, -0.9 | +0.8, +1.1; sum -1.28 over 5 tokens."""
    logprobs = _lp([[1.5, 1.0, 0.9], [0.5, 1.1, 1.0]])
    old = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    loss, m = policy_loss(logprobs, old, torch.tensor([1.0, -1.0]), mask)
    assert loss.item() == pytest.approx(-1.28 / 5)
    assert m["train/clip_frac_high"] == pytest.approx(1 / 5)
    assert m["train/clip_frac_low"] == pytest.approx(1 / 5)
    assert m["train/ratio_mean"] == pytest.approx((1.5 + 1.0 + 0.9 + 0.5 + 1.1) / 5)
    assert m["train/num_tokens"] == 5
    loss.backward()
    # d/dlogp of -r*A/5 is -r*A/5; clipped tokens and the padded one get no gradient
    expected = torch.tensor([[0.0, -1.0 / 5, -0.9 / 5], [0.0, 1.1 / 5, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_loss_does_not_clip_on_the_side_that_makes_it_worse():
    """Pessimism: a ratio past 1 + eps_high with NEGATIVE advantage keeps its full (larger)
    loss and its gradient; likewise below 1 - eps_low with positive advantage."""
    logprobs = _lp([[1.5], [0.5]])
    loss, m = policy_loss(logprobs, torch.zeros(2, 1), torch.tensor([-1.0, 1.0]), torch.ones(2, 1))
    assert loss.item() == pytest.approx((1.5 - 0.5) / 2)
    assert m["train/clip_frac_high"] == 0 and m["train/clip_frac_low"] == 0
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[1.5 / 2], [-0.5 / 2]]))


def test_loss_is_token_level_not_mean_of_sequence_means():
    """On-policy (ratio 1) each token's loss is -A. One token with A = +1 and three with
    A = -1: token-level (-1 + 3) / 4 = 0.5; a mean of sequence means would give 0."""
    logprobs = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    loss, _ = policy_loss(logprobs, None, torch.tensor([1.0, -1.0]), mask)
    assert loss.item() == pytest.approx(0.5)


def test_num_tokens_makes_micro_batches_add_up_to_the_batch():
    torch.manual_seed(0)
    lp, old = torch.randn(4, 5) * 0.1 - 1, torch.randn(4, 5) * 0.1 - 1
    adv, mask = torch.tensor([1.0, -0.5, 0.3, -0.8]), (torch.rand(4, 5) > 0.3).float()
    whole, _ = policy_loss(lp, old, adv, mask)
    n = mask.sum()
    parts = [policy_loss(lp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], num_tokens=n)[0]
             for i in (0, 2)]
    assert (parts[0] + parts[1]).item() == pytest.approx(whole.item())


def test_masked_tokens_contribute_nothing():
    """Anything at masked positions (huge, -inf, NaN-prone values) changes neither the loss
    nor the gradient of the trained tokens."""
    torch.manual_seed(1)
    mask = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 0]])
    adv = torch.tensor([0.7, -0.4])
    base = {k: torch.randn(2, 4) * 0.2 - 1 for k in ("lp", "old", "ref", "sampler")}

    def run(fill: dict[str, float]):
        t = {k: torch.where(mask.bool(), v, torch.full_like(v, fill[k])) for k, v in base.items()}
        lp = t["lp"].clone().requires_grad_(True)
        loss, _ = policy_loss(lp, t["old"], adv, mask, beta=0.05, ref_logprobs_B_T=t["ref"],
                              sampler_logprobs_B_T=t["sampler"], tis_cap=2.0)
        loss.backward()
        return loss.detach(), lp.grad

    loss_a, grad_a = run({"lp": 0.0, "old": 0.0, "ref": 0.0, "sampler": 0.0})
    loss_b, grad_b = run({"lp": 1e4, "old": -1e4, "ref": float("-inf"), "sampler": float("-inf")})
    assert torch.isfinite(loss_b)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(grad_a, grad_b)
    assert (grad_b[~mask.bool()] == 0).all()


def test_kl_term_is_k3_against_reference():
    # logp = 0, ref = ln 2: d = ln 2, k3 = 2 - ln 2 - 1 = 0.30685; A = 0, ratio 1
    lp = torch.zeros(1, 1, requires_grad=True)
    loss, m = policy_loss(lp, None, torch.zeros(1), torch.ones(1, 1), beta=0.1,
                          ref_logprobs_B_T=torch.full((1, 1), LN(2)))
    assert loss.item() == pytest.approx(0.1 * (1 - LN(2)))
    assert m["train/kl"] == pytest.approx(1 - LN(2))
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(lp, None, torch.zeros(1), torch.ones(1, 1), beta=0.1)


def test_truncated_importance_weights():
    """Trainer log-prob 0; sampler ln 0.5 and ln 2: weights exp(0 - s) = 2 (capped to 1.5)
    and 0.5. On-policy, A = 1: per token -w, loss (-1.5 - 0.5) / 2 = -1.0."""
    lp = torch.zeros(1, 2, requires_grad=True)
    sampler = torch.tensor([[LN(0.5), LN(2.0)]])
    loss, m = policy_loss(lp, None, torch.ones(1), torch.ones(1, 2),
                          sampler_logprobs_B_T=sampler, tis_cap=1.5)
    assert loss.item() == pytest.approx(-1.0)
    assert m["train/sampler_logprob_gap"] == pytest.approx(LN(2))
    assert m["train/tis_weight_mean"] == pytest.approx(1.0)
    assert m["train/tis_capped_frac"] == pytest.approx(0.5)
    no_tis, m2 = policy_loss(lp, None, torch.ones(1), torch.ones(1, 2), sampler_logprobs_B_T=sampler)
    assert no_tis.item() == pytest.approx(-1.0 * 2 / 2) and "train/tis_weight_mean" not in m2


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same layout"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), None, torch.zeros(3), torch.ones(2, 3))


# ---------------------------------------------------------------- batch and log-probs


def test_make_batch_layout():
    a = rollout("a", prompt=[1, 2], tokens=[5, 6, 7], mask=[1, 0, 1], logprobs=[-0.1, 0.0, -0.3])
    b = rollout("b", prompt=[3], tokens=[8], mask=[1], logprobs=[-0.2])
    batch = make_batch([a, b], [0.5, -0.5], pad_token_id=0)
    assert batch.input_ids_B_L.tolist() == [[1, 2, 5, 6, 7], [3, 8, 0, 0, 0]]
    assert batch.attention_mask_B_L.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.loss_mask_B_L.tolist() == [[0, 0, 1, 0, 1], [0, 1, 0, 0, 0]]
    torch.testing.assert_close(batch.sampler_logprobs_B_L,
                               torch.tensor([[0, 0, -0.1, 0, -0.3], [0, -0.2, 0, 0, 0]]))
    assert batch.advantages_B.tolist() == [0.5, -0.5] and batch.num_tokens == 3


def test_flatten_groups_needs_advantages():
    g = _scored([True, False], [1.1, -0.5])
    with pytest.raises(ValueError, match="assign_advantages"):
        flatten_groups([g])
    assign_advantages([g])
    assert flatten_groups([g])[1] == pytest.approx([0.8, -0.8])


@pytest.fixture(scope="module")
def tiny():
    from aimo3_recipe.testing import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    return make_tiny_model(tok).float(), tok


def test_token_logprobs_match_naive_log_softmax(tiny):
    model, _ = tiny
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (3, 9))
    attn = torch.ones_like(ids)
    attn[2, 7:] = 0
    loss_mask = torch.zeros(3, 9)
    loss_mask[0, 3:] = 1
    loss_mask[1, 5:8] = 1
    loss_mask[2, 4:7] = 1
    lp, ent = token_logprobs(model, ids, attn, loss_mask, temperature=0.7, compute_entropy=True,
                             rows_per_chunk=2)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1] / 0.7
    naive = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    naive_ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    m = loss_mask[:, 1:]
    torch.testing.assert_close(lp[:, 1:], naive * m, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent[:, 1:], naive_ent * m, atol=1e-5, rtol=1e-5)
    assert (lp[loss_mask == 0] == 0).all()
    with pytest.raises(ValueError, match="first token"):
        token_logprobs(model, ids, attn, torch.ones(3, 9))


def test_batch_to_loss_end_to_end_gives_gradients(tiny):
    """make_batch -> token_logprobs -> policy_loss -> backward: every parameter that the
    trained tokens depend on gets a finite gradient, and tool tokens are not trained."""
    model, _ = tiny
    a = rollout("a", prompt=[10, 11, 12], tokens=[20, 21, 22, 23], mask=[1, 1, 0, 1],
                logprobs=[-5.0, -5.1, 0.0, -5.2])
    b = rollout("b", prompt=[13, 14], tokens=[24, 25], mask=[1, 1], logprobs=[-5.0, -5.3])
    batch = make_batch([a, b], [1.0, -1.0], pad_token_id=0)
    model.zero_grad()
    lp, ent = token_logprobs(model, batch.input_ids_B_L, batch.attention_mask_B_L,
                             batch.loss_mask_B_L, compute_entropy=True)
    loss, m = policy_loss(lp, None, batch.advantages_B, batch.loss_mask_B_L,
                          sampler_logprobs_B_T=batch.sampler_logprobs_B_L, entropy_B_T=ent)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert m["train/num_tokens"] == 5 and m["train/entropy"] > 0
    assert m["train/sampler_logprob_gap"] > 0
