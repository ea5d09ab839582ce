"""Both RL backends read the same `rl.loss` (LossConfig) and, on the same batch, train the
same loss: the local backend computes `rl.loss.policy_loss`; the Tinker backend sends rows
whose advantages, masks and ratio denominators make the service's documented loss (`ppo`:
-sum min(r A, clip(r) A) with r = exp(logp - datum.logprobs); `importance_sampling`: -sum r A)
equal to it. The service is simulated by a fake training client that scores tokens with the
same tiny model as the local backend (no Tinker server or SDK needed); what the service
cannot compute (a KL term) stops the run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl import tinker_backend
from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.config import LossConfig
from aimo3_recipe.rl.loss import token_logprobs
from aimo3_recipe.rl.tinker_backend import TinkerBackend, check_loss


class FakeService:
    """A Tinker training client over a local model: `forward` returns its log-probs,
    `forward_backward` computes the service's loss from the datums as Tinker defines it."""

    def __init__(self, model):
        self.model = model
        self.losses: list[float] = []
        self.sent: list = []

    def _logprobs(self, row) -> torch.Tensor:
        ids = torch.tensor([row.model_input + row.target_tokens[-1:]])
        mask = torch.ones_like(ids)
        loss_mask = torch.zeros_like(ids, dtype=torch.float32)
        loss_mask[:, 1:] = 1.0
        with torch.no_grad():
            lp, _ = token_logprobs(self.model, ids, mask, loss_mask)
        return lp[0, 1:]

    def forward(self, data, loss_fn):
        return _Out([{"logprobs": self._logprobs(r)} for r in data])

    def forward_backward(self, data, loss_fn, config):
        self.sent.append((data, loss_fn, config))
        total = 0.0
        outs = []
        for row in data:
            lp = self._logprobs(row)
            ratio = torch.exp(lp - torch.tensor(row.logprobs))
            adv = torch.tensor(row.advantages)
            if loss_fn == "ppo":
                clipped = torch.clamp(ratio, config["clip_low_threshold"],
                                      config["clip_high_threshold"])
                total += float(-torch.min(ratio * adv, clipped * adv).sum())
            else:
                assert loss_fn == "importance_sampling" and config is None
                total += float(-(ratio * adv).sum())
            outs.append({"logprobs": lp})
        self.losses.append(total)
        return _Out(outs)


@dataclasses.dataclass
class _Out:
    loss_fn_outputs: list


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from aimo3_recipe.models import load_model

    torch.manual_seed(0)
    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def tinker(model, tokenizer_stub, monkeypatch):
    monkeypatch.setattr(tinker_backend, "to_tinker", lambda row, loss_fn: row)  # no SDK types
    service = FakeService(model)
    backend = TinkerBackend(service, tokenizer_stub, learning_rate=1e-3, max_grad_norm=1.0,
                            base_state="tinker://fake/state")
    return backend, service


@pytest.fixture
def tokenizer_stub():
    return type("Tok", (), {"pad_token_id": 0})()


def _batch(model) -> RLBatch:
    """Two rows (one padded), a masked tool-output token, sampler log-probs off the trainer's
    by up to 0.3 (so the ratio denominators, the TIS weights and the clip all matter)."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 60, (2, 9), generator=g)
    ids[1, 7:] = 0
    attn = (torch.arange(9) < torch.tensor([[9], [7]])).long()
    loss_mask = torch.zeros(2, 9)
    loss_mask[0, 3:9] = 1.0
    loss_mask[1, 4:7] = 1.0
    loss_mask[0, 5] = 0.0  # tool output: no loss
    with torch.no_grad():
        trainer, _ = token_logprobs(model, ids, attn, loss_mask)
    noise = (torch.rand(2, 9, generator=g) - 0.5) * 0.6
    sampler = (trainer + noise) * loss_mask
    return RLBatch(ids, attn, loss_mask, sampler, torch.tensor([0.8, -0.6]))


def _local_loss(model, batch, loss: LossConfig, old=None, num_tokens=7.0) -> float:
    from aimo3_recipe.rl.local_backend import LocalBackend

    backend = LocalBackend(model, None, learning_rate=1e-3)
    metrics = backend.forward_backward(batch, old_logprobs=old, num_tokens=num_tokens, loss=loss)
    backend.optimizer.zero_grad(set_to_none=True)
    return metrics["train/loss"]


CASES = {
    "defaults": LossConfig(),
    "tis_on_policy": LossConfig(tis_cap=1.05),
    "no_clip": LossConfig(clip=False),
    "ratio_against_sampler": LossConfig(ratio_against="sampler", epsilon_low=0.05,
                                        epsilon_high=0.05),
    "tight_clip_tis": LossConfig(epsilon_low=0.01, epsilon_high=0.02, tis_cap=1.1),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("later_epoch", [False, True], ids=["on_policy", "old_logprobs"])
def test_same_batch_same_advantages_masks_and_loss(model, tinker, name, later_epoch):
    loss = CASES[name]
    backend, service = tinker
    batch = _batch(model)
    old = None
    if later_epoch:  # a later PPO epoch: the trainer's log-probs before the step, not now's
        g = torch.Generator().manual_seed(5)
        old = (backend.logprobs(batch) + (torch.rand(2, 9, generator=g) - 0.5) * 0.4) \
            * batch.loss_mask_B_L
    backend.forward_backward(batch, old_logprobs=old, num_tokens=7.0, loss=loss)
    (rows, loss_fn, _config), = service.sent
    assert loss_fn == ("ppo" if loss.clip else "importance_sampling")
    for b, row in enumerate(rows):
        n = int(batch.attention_mask_B_L[b].sum())
        mask = batch.loss_mask_B_L[b, 1:n]
        adv = torch.tensor(row.advantages)
        # masks: a row trains exactly the tokens the local loss mask trains
        assert torch.equal(adv != 0, mask.bool())
        # advantages: the row's, over the step's tokens, times the (detached) TIS weight
        weight = adv[mask.bool()] * 7.0 / float(batch.advantages_B[b])
        if not loss.tis_cap or (loss.ratio_against == "sampler" and old is None):
            assert torch.allclose(weight, torch.ones_like(weight), atol=1e-6)
        else:
            assert (weight <= loss.tis_cap + 1e-6).all() and not torch.allclose(
                weight, torch.ones_like(weight))
    local = _local_loss(model, batch, loss, old)
    assert service.losses[0] == pytest.approx(local, rel=1e-5, abs=1e-7)


def test_tinker_refuses_what_the_service_cannot_compute(model, tinker):
    backend, service = tinker
    with pytest.raises(ConfigError, match=r"rl\.loss\.beta=0\.1.*no KL"):
        check_loss(LossConfig(beta=0.1))
    with pytest.raises(ConfigError, match="no KL"):
        backend.forward_backward(_batch(model), old_logprobs=None, num_tokens=7.0,
                                 loss=LossConfig(beta=0.1))
    assert not service.sent  # nothing was trained


def test_local_kl_term_uses_the_base_model_as_reference(model, tiny_model_dir):
    """beta > 0 locally: a LoRA policy whose adapter is zero equals its reference, so the KL
    term is 0; once the adapter moves, the loss grows by beta * KL > 0."""
    from aimo3_recipe.models import LoraSettings, load_model
    from aimo3_recipe.rl.local_backend import LocalBackend

    policy = load_model(str(tiny_model_dir), device="cpu", dtype="float32",
                        lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    backend = LocalBackend(policy, None, learning_rate=1e-3)
    batch = _batch(model)
    m = backend.forward_backward(batch, old_logprobs=None, num_tokens=7.0,
                                 loss=LossConfig(beta=0.5))
    assert m["train/kl"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, p in backend.policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    m = backend.forward_backward(batch, old_logprobs=None, num_tokens=7.0,
                                 loss=LossConfig(beta=0.5))
    assert m["train/kl"] > 1e-4
