"""The RL update in bounded memory, and in bf16 with fp32 master weights (issues 22.3, 22.5,
24): log-probs and entropy through the LM head in chunks equal the full-logits computation;
micro-batches cut by a token budget give the gradient of the whole batch; activation
checkpointing changes nothing but memory; an on-policy step runs one forward per micro-batch
and no separate old-policy pass; a full fine-tuning step in bf16 moves the weights as fp32
does (pure bf16 rounds a 1e-5 update of a 0.02 weight away)."""

from __future__ import annotations

import copy
import random
from typing import ClassVar

import pytest
import torch

from aimo3_recipe.rl.batch import make_batch, token_budget_parts
from aimo3_recipe.rl.config import GRPOConfig, LossConfig
from aimo3_recipe.rl.logprobs import entropy_sample_mask, token_logprobs
from aimo3_recipe.rl.types import Rollout, RolloutGroup


@pytest.fixture(scope="module")
def tiny():
    from aimo3_recipe.testing import make_tiny_model, make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    return make_tiny_model(tok).float(), tok


def _batch(seed: int = 0, B: int = 5, L: int = 13):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 200, (B, L), generator=g)
    attn = torch.ones_like(ids)
    loss_mask = torch.zeros(B, L)
    for b in range(B):
        end = L - b  # ragged right padding
        attn[b, end:] = 0
        loss_mask[b, 2 + b % 3:end] = 1
        loss_mask[b, 6] = 0  # a tool-output token inside the completion
    return ids, attn, loss_mask


def _naive(model, ids, attn, loss_mask, temperature):
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float() / temperature
    logp = torch.log_softmax(logits, -1)
    lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * loss_mask[:, 1:]
    ent = -(logp.exp() * logp).sum(-1) * loss_mask[:, 1:]
    pad = torch.zeros(ids.shape[0], 1)
    return torch.cat([pad, lp], 1), torch.cat([pad, ent.detach()], 1)


@pytest.mark.parametrize("chunk_tokens,rows", [(1, None), (7, 2), (4096, None), (3, 1)])
def test_chunked_logprobs_entropy_and_gradients_equal_unchunked(tiny, chunk_tokens, rows):
    model, _ = tiny
    ids, attn, loss_mask = _batch()
    w = torch.randn(ids.shape, generator=torch.Generator().manual_seed(1))
    model.zero_grad()
    ref_lp, ref_ent = _naive(model, ids, attn, loss_mask, 0.7)
    (ref_lp * w).sum().backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lp, ent = token_logprobs(model, ids, attn, loss_mask, temperature=0.7, compute_entropy=True,
                             chunk_tokens=chunk_tokens, rows_per_chunk=rows)
    (lp * w).sum().backward()
    torch.testing.assert_close(lp, ref_lp, atol=1e-6, rtol=0)
    # entropies are ~6 nats here: float32's ulp there is ~5e-7, and a one-row matmul sums in
    # another order than a batched one, so 1e-6 is relative for them
    torch.testing.assert_close(ent, ref_ent, atol=1e-6, rtol=1e-6)
    for p, g in zip(model.parameters(), ref_grads):  # sums of per-chunk terms: order differs
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    model.zero_grad()


def test_no_full_vocab_tensor_is_built(tiny, monkeypatch):
    """The LM head only ever sees `chunk_tokens` positions at once, forward and backward."""
    model, _ = tiny
    ids, attn, loss_mask = _batch(B=6, L=20)
    head = model.get_output_embeddings()
    seen: list[int] = []
    handle = head.register_forward_hook(lambda m, i, o: seen.append(o.shape[:-1].numel()))
    try:
        lp, _ = token_logprobs(model, ids, attn, loss_mask, chunk_tokens=8,
                               entropy_mask_B_L=entropy_sample_mask(loss_mask, 5))
        lp.sum().backward()
    finally:
        handle.remove()
        model.zero_grad()
    assert seen and max(seen) <= 8, seen  # model's own head: 1 position per row (6)
    assert sum(seen) > int(loss_mask.sum())  # backward recomputed the chunks


def test_entropy_sample_mask_is_bounded_spread_and_inside_the_loss_mask():
    _, _, loss_mask = _batch(B=5, L=40)
    total = int(loss_mask.sum())
    m = entropy_sample_mask(loss_mask, 16)
    assert int(m.sum()) == 16 and bool((loss_mask[m] == 1).all())
    assert m.any(dim=1).all()  # spread over rows, not the first row's tokens only
    assert torch.equal(m, entropy_sample_mask(loss_mask, 16))  # deterministic
    assert int(entropy_sample_mask(loss_mask, 0).sum()) == total
    assert int(entropy_sample_mask(loss_mask, 10 * total).sum()) == total


def test_token_budget_parts_respect_the_budget_and_cover_every_rollout():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(60)]
    idx = list(range(60))
    for budget in (64, 301, 1000, 5000):
        parts = token_budget_parts(idx, lengths, budget)
        assert sorted(i for p in parts for i in p) == idx
        for p in parts:
            padded = len(p) * max(lengths[i] for i in p)
            assert padded <= budget or len(p) == 1
    assert token_budget_parts(idx, lengths, 0) == [idx]
    assert all(len(p) == 1 for p in token_budget_parts(idx, lengths, 4))  # each alone


def _groups(tok, n_groups=3, size=4, seed=0):
    rng = random.Random(seed)
    groups = []
    for g in range(n_groups):
        rollouts = []
        for _ in range(size):
            n = rng.randint(3, 25)
            tokens = [rng.randint(3, 200) for _ in range(n)]
            mask = [0 if rng.random() < 0.1 else 1 for _ in range(n)]
            rollouts.append(Rollout(prompt_ids=[rng.randint(3, 200) for _ in range(4 + g)],
                                    tokens=tokens, mask=mask,
                                    sampler_logprobs=[-5.0 * m for m in mask], text="x",
                                    model_text="x"))
        adv = [rng.uniform(-1, 1) for _ in range(size)]
        groups.append(RolloutGroup(problem=f"p{g}", answer="1", rollouts=rollouts,
                                   advantages_G=adv))
    return groups


class _RecordingBackend:
    """A LocalBackend whose optimizer step first records the accumulated gradient."""

    @staticmethod
    def make(model, tok, **kw):
        from aimo3_recipe.rl.local_backend import LocalBackend

        class Recording(LocalBackend):
            grads: ClassVar[list[dict[str, torch.Tensor]]] = []
            logprob_calls = 0

            def optim_step(self):
                self.grads.append({n: p.grad.clone() for n, p in self.policy.named_parameters()
                                   if p.grad is not None})
                return super().optim_step()

            def logprobs(self, batch):
                type(self).logprob_calls += 1
                return super().logprobs(batch)

        Recording.grads = []
        return Recording(model, tok, learning_rate=1e-3, **kw)


@pytest.mark.parametrize("budget,checkpointing", [(60, False), (25, True), (0, True)])
def test_token_budget_and_checkpointing_give_the_unbatched_gradient(tiny, budget, checkpointing):
    from aimo3_recipe.rl.loop import update

    model, tok = tiny
    groups = _groups(tok)
    ref = _RecordingBackend.make(copy.deepcopy(model), tok)
    update(GRPOConfig(group_size=4), ref, groups, groups)
    test = _RecordingBackend.make(copy.deepcopy(model), tok,
                                  gradient_checkpointing=checkpointing,
                                  max_tokens_per_microbatch=budget)
    calls = []
    test.model.register_forward_hook(lambda m, i, o: calls.append(1))
    m = update(GRPOConfig(group_size=4, max_tokens_per_microbatch=budget), test, groups, groups)
    if checkpointing:
        policy = test.policy
        assert getattr(policy, "is_activation_checkpointing", None) or \
            policy.is_gradient_checkpointing
    expected_parts = len(token_budget_parts(list(range(12)), [
        len(r.prompt_ids) + len(r.tokens) for g in groups for r in g.rollouts], budget))
    assert len(calls) == expected_parts  # one forward per micro-batch, nothing else
    assert test.logprob_calls == 0  # on-policy: no separate old-policy pass
    assert len(ref.grads) == len(test.grads) == 1 and m["train/optimizer_steps"] == 1
    for name, g in ref.grads[0].items():
        torch.testing.assert_close(test.grads[0][name], g, atol=1e-6, rtol=1e-4)


def test_off_policy_old_logprobs_use_the_budget_and_match(tiny):
    """With two optimizer steps per batch the old policy's log-probs are taken once, in
    budget-sized row chunks, and equal the unchunked ones."""
    from aimo3_recipe.rl.loop import _row_logprobs

    model, tok = tiny
    rollouts = [r for g in _groups(tok) for r in g.rollouts]
    a = _RecordingBackend.make(copy.deepcopy(model), tok)
    b = _RecordingBackend.make(copy.deepcopy(model), tok, max_tokens_per_microbatch=40,
                               logprob_chunk_tokens=5)
    ra = _row_logprobs(a, rollouts, [0.0] * len(rollouts), tok.pad_token_id)
    rb = _row_logprobs(b, rollouts, [0.0] * len(rollouts), tok.pad_token_id)
    for x, y in zip(ra, rb):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def _one_step_delta(model, tok, batch, autocast=None):
    from aimo3_recipe.rl.local_backend import LocalBackend

    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    backend = LocalBackend(model, tok, learning_rate=1e-5, autocast_dtype=autocast)
    backend.forward_backward(batch, old_logprobs=None, num_tokens=float(batch.num_tokens),
                             loss=LossConfig())
    backend.optim_step()
    return {n: p.detach().float() - before[n] for n, p in backend.policy.named_parameters()}


def test_bf16_full_finetuning_keeps_fp32_master_weights_and_moves_like_fp32(tiny):
    """Issue 22.5, on CPU: the recipe's precision for full fine-tuning in bf16 (fp32 weights,
    bf16 autocast) moves every weight by ~lr as an fp32 step does; the old pure-bf16 model
    loses most of the update to rounding."""
    from aimo3_recipe.training.devices import training_precision

    model, tok = tiny
    rollouts = [r for g in _groups(tok) for r in g.rollouts]
    batch = make_batch(rollouts, [1.0 if i % 2 else -1.0 for i in range(len(rollouts))],
                       tok.pad_token_id)
    load, autocast = training_precision(torch.bfloat16, use_lora=False)
    assert (load, autocast) == (torch.float32, torch.bfloat16)
    assert training_precision(torch.bfloat16, use_lora=True) == (torch.bfloat16, None)
    fp32 = _one_step_delta(copy.deepcopy(model), tok, batch)
    mixed = _one_step_delta(copy.deepcopy(model).to(load), tok, batch, autocast)
    pure = _one_step_delta(copy.deepcopy(model).to(torch.bfloat16), tok, batch)
    names = [n for n in fp32 if fp32[n].abs().sum() > 0]

    def moved(d):
        return sum(int((d[n] != 0).sum()) for n in names) / sum(d[n].numel() for n in names)

    assert moved(fp32) > 0.9 and moved(mixed) > 0.9, (moved(fp32), moved(mixed))
    assert moved(pure) < 0.5  # what full fine-tuning in bf16 did before
    for n in names:  # Adam's first step is ~lr * sign(g): the same steps, up to bf16 noise
        agree = (torch.sign(mixed[n]) == torch.sign(fp32[n])).float().mean()
        assert agree > 0.8, (n, float(agree))
        torch.testing.assert_close(mixed[n].abs().mean(), fp32[n].abs().mean(), rtol=0.2,
                                   atol=0)


def test_heads_that_are_not_a_bare_linear_layer_take_the_full_logits_path(tiny, monkeypatch):
    """A model with soft-capped (Gemma-2) or scaled logits must not be scored by lm_head
    alone: it takes the plain path, which equals the naive computation."""
    from aimo3_recipe.rl import logprobs as lp_module

    model, _ = tiny
    ids, attn, loss_mask = _batch()
    monkeypatch.setattr(model.config, "final_logit_softcapping", 30.0, raising=False)
    assert not lp_module._plain_lm_head(model)
    called = []
    real = lp_module._full_logits_path
    monkeypatch.setattr(lp_module, "_full_logits_path",
                        lambda *a, **k: called.append(1) or real(*a, **k))
    with torch.no_grad():
        lp, ent = token_logprobs(model, ids, attn, loss_mask, compute_entropy=True,
                                 rows_per_chunk=2)
        ref_lp, ref_ent = _naive(model, ids, attn, loss_mask, 1.0)
    assert called
    torch.testing.assert_close(lp, ref_lp, atol=1e-6, rtol=0)
    torch.testing.assert_close(ent, ref_ent, atol=1e-6, rtol=1e-6)
