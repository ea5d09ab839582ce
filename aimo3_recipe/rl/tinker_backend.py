"""The Tinker RL backend: the same five calls as the local one (rl/backend.py), served by a
Tinker training client, so `rl.loop.train` runs unchanged against the service.

- forward_backward: each padded row becomes a Tinker Datum (model input = ids[:-1], targets
  = ids[1:]) for the service's `ppo` loss (clipped at 1 - epsilon_low .. 1 + epsilon_high;
  `rl.loss.clip` false: `importance_sampling`, unclipped). Advantages are per token: the row's
  advantage on trained tokens, 0 on the prompt, tool output and padding (which therefore carry
  no loss), divided by the step's `num_tokens` because the service sums token losses: the sum
  is then our token-level (DAPO) mean. The ratio's denominator is what we pass as `logprobs`:
  the trainer's own log-probs before the step (`rl.loss.ratio_against` trainer; on-policy they
  come from one extra `forward`, so the ratio is 1 as locally) or the sampler's (`sampler`: no
  extra forward; the clip then also bounds the sampler gap). `rl.loss.tis_cap` folds
  min(exp(trainer - sampler), cap) into the advantages (a constant weight, as locally, since
  it is detached). So the service's loss is `rl.loss.policy_loss` term for term
  (tests/test_tinker_loss.py). What it cannot do, a KL term (`rl.loss.beta`: the service has
  no reference model), `check_loss` refuses before the run starts. The loss metrics are
  `policy_loss`'s, computed on the log-probs the service returns, so the names and meanings
  match local training (no entropy: the service does not return it).
- optim_step: Adam with the config's learning rate; grad norm from the service's metrics.
- sync_sampler: save weights for the sampler and take a new sampling client (TinkerEngine).
- save/load: `save_state` (weights + optimizer) under a name, its tinker:// path in
  `<checkpoint>/tinker.json`; load is `load_state_with_optimizer`.

Exactly once. A forward/backward or optimizer step whose attempt failed may still have been
applied (the response was lost), and a server that does not deduplicate (SkyRL) would apply a
resent one twice. So the backend keeps a journal of the mutating calls since the last saved
state; after a failed attempt it loads that state (load, an optimizer step at learning rate 0
to drop any half-accumulated gradient, load again), replays the journal and tries again. The
result is the same as without the fault; the cost is bounded by `save_steps`.

Limits: SkyRL's JAX backend averages gradients over the sequences of an optimizer step where
the Tinker service sums them, so the same run's update differs in scale by the number of rows
there (Adam makes that nearly irrelevant); world_size is 1 (the service parallelises).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.tinker_engine import TinkerEngine
from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.config import LossConfig
from aimo3_recipe.rl.loss import loss_args, old_logprobs_for, policy_loss
from aimo3_recipe.utils.notice import notice
from aimo3_recipe.utils.tinker_sdk import (
    Retrier,
    TinkerServiceError,
    describe,
    is_transient,
    resolve,
    wait,
)

STATE_FILE = "tinker.json"


def check_loss(loss: LossConfig) -> None:
    """Stop before training when the service cannot compute the loss `rl.loss` asks for
    (rather than train something else)."""
    if loss.beta:
        raise ConfigError(f"rl.loss.beta={loss.beta}: the Tinker service's losses have no KL "
                          "term (it keeps no reference model); set rl.loss.beta=0 on Tinker, "
                          "or train locally (train.py --stage rl) for a KL penalty")


def service_loss(loss: LossConfig) -> tuple[str, dict[str, float] | None]:
    """The service's loss function and its config for `rl.loss`."""
    if not loss.clip:
        return "importance_sampling", None
    return "ppo", {"clip_low_threshold": 1 - loss.epsilon_low,
                   "clip_high_threshold": 1 + loss.epsilon_high}


@dataclass
class RowDatum:
    """One sequence as Tinker trains on it (plain lists; `to_tinker` builds the SDK type)."""

    model_input: list[int]  # ids[:-1]
    target_tokens: list[int]  # ids[1:]
    logprobs: list[float]  # the ratio's denominator at each target (sampler or old policy)
    advantages: list[float]  # per target token; 0 where nothing is trained
    weights: list[float] = field(default_factory=list)  # cross-entropy only: 1 where trained


def rl_rows(batch: RLBatch, old_logprobs_B_L: torch.Tensor | None, num_tokens: float,
            tis_cap: float | None = None) -> list[RowDatum]:
    """RLBatch rows -> Tinker rows (see the module docstring for the advantage scaling)."""
    out = []
    lengths = batch.attention_mask_B_L.sum(dim=1).tolist()
    for b, n in enumerate(int(x) for x in lengths):
        ids = batch.input_ids_B_L[b, :n].tolist()
        mask = batch.loss_mask_B_L[b, 1:n]
        sampler = batch.sampler_logprobs_B_L[b, 1:n]
        denom = sampler if old_logprobs_B_L is None else old_logprobs_B_L[b, 1:n].float()
        adv = mask * float(batch.advantages_B[b]) / float(num_tokens)
        if tis_cap and old_logprobs_B_L is not None:
            adv = adv * torch.clamp(torch.exp(denom - sampler), max=tis_cap) * mask
        out.append(RowDatum(ids[:-1], ids[1:], (denom * mask).tolist(), adv.tolist()))
    return out


def sft_rows(input_ids: list[list[int]], labels: list[list[int]], ignore_index: int = -100,
             scale: float = 1.0) -> list[RowDatum]:
    """Rendered SFT examples -> cross-entropy rows: weight `scale` where the label is kept."""
    out = []
    for ids, lab in zip(input_ids, labels):
        w = [scale if t != ignore_index else 0.0 for t in lab[1:]]
        out.append(RowDatum(list(ids[:-1]), list(ids[1:]), [], [], w))
    return out


def to_tinker(row: RowDatum, loss_fn: str):
    from tinker import types

    inputs: dict[str, Any] = {"target_tokens": row.target_tokens}
    if loss_fn == "cross_entropy":
        inputs["weights"] = row.weights
    else:
        inputs["logprobs"] = row.logprobs
        inputs["advantages"] = row.advantages
    return types.Datum(model_input=types.ModelInput.from_ints(row.model_input),
                       loss_fn_inputs=inputs)


def output_logprobs(out: Any) -> list[list[float]]:
    """Per-target log-probs of each datum from a forward(_backward) result."""
    rows = []
    for o in out.loss_fn_outputs:
        lp = o["logprobs"]
        rows.append([float(x) for x in (lp.tolist() if hasattr(lp, "tolist") else lp.data)])
    return rows


def grad_norm(metrics: dict[str, Any] | None) -> float:
    """The service's gradient norm, whatever its metric is called (nan when absent)."""
    for k, v in (metrics or {}).items():
        if "grad_norm" in k:
            return float(v)
    return math.nan


class TinkerBackend:
    rank = 0
    world_size = 1

    def __init__(self, training_client: Any, tokenizer: Any, *, learning_rate: float,
                 max_grad_norm: float, retrier: Retrier | None = None,
                 base_state: str | None = None, name_prefix: str = "rl") -> None:
        self.client = training_client
        self.tokenizer = tokenizer
        self.learning_rate = learning_rate
        self.max_grad_norm = max_grad_norm
        self.retrier = retrier or Retrier()
        self.prefix = name_prefix
        self._engine: TinkerEngine | None = None
        self._syncs = 0
        self._journal: list[tuple[str, Any]] = []
        self.base_state = base_state or self._save_state(f"{self.prefix}-init")

    # -- sampling ------------------------------------------------------------------------
    def sampler(self) -> TinkerEngine:
        if self._engine is None:
            self.sync_sampler()
        assert self._engine is not None
        return self._engine

    def sync_sampler(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self._syncs += 1
        client = self.retrier.call(
            "save_weights_and_get_sampling_client",
            lambda: resolve(self.client.save_weights_and_get_sampling_client()))
        self._engine = TinkerEngine(resolve(client), self.tokenizer, self.retrier)
        return {"time/weight_sync": time.perf_counter() - t0}

    def sampler_weights(self) -> TinkerEngine:
        """Off-policy rollouts: the weights now, saved for sampling (a sampling client)."""
        self.sync_sampler()
        assert self._engine is not None
        return self._engine

    def detached_sampler(self, weights: TinkerEngine) -> TinkerEngine:
        """The service samples apart from training already: the saved client is the engine."""
        return weights

    # -- training ------------------------------------------------------------------------
    def logprobs(self, batch: RLBatch) -> torch.Tensor:
        rows = rl_rows(batch, None, 1.0)
        data = [to_tinker(r, "cross_entropy") for r in
                [RowDatum(r.model_input, r.target_tokens, [], [], [0.0] * len(r.target_tokens))
                 for r in rows]]
        out = self.retrier.call("forward", lambda: self.client.forward(data, "cross_entropy"))
        return _full_rows(output_logprobs(out), batch)

    def forward_backward(self, batch: RLBatch, *, old_logprobs: Any, num_tokens: float,
                         loss: LossConfig) -> dict[str, float]:
        check_loss(loss)
        old = old_logprobs_for(loss, None if old_logprobs is None else old_logprobs.float(),
                               batch.sampler_logprobs_B_L)
        if old is None:  # on-policy, ratio against the trainer: its log-probs now
            old = self.logprobs(batch)
        rows = rl_rows(batch, old, num_tokens, loss.tis_cap or None)
        loss_fn, config = service_loss(loss)
        out = self.mutate("forward_backward", ([to_tinker(r, loss_fn) for r in rows],
                                               loss_fn, config))
        lp = _full_rows(output_logprobs(out), batch)
        _, metrics = policy_loss(lp, old, batch.advantages_B, batch.loss_mask_B_L,
                                 sampler_logprobs_B_T=batch.sampler_logprobs_B_L,
                                 num_tokens=num_tokens, **loss_args(loss))
        return metrics

    def optim_step(self) -> dict[str, float]:
        out = self.mutate("optim_step", self.learning_rate)
        return {"train/grad_norm": grad_norm(getattr(out, "metrics", None)), **self.stats()}

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.retrier.stats.items()}

    # -- exactly-once mutations ----------------------------------------------------------
    def mutate(self, op: str, args: Any) -> Any:
        """Run a forward_backward / optim_step; after a failed attempt, restore and replay."""
        result = self.retrier.call(op, lambda: self._submit(op, args),
                                   on_failure=lambda err: self._recover(op))
        self._journal.append((op, args))
        return result

    def _submit(self, op: str, args: Any) -> Any:
        if op == "forward_backward":
            data, loss_fn, config = args
            return self.client.forward_backward(data, loss_fn, config)
        from tinker import types

        return self.client.optim_step(types.AdamParams(learning_rate=args,
                                                       grad_clip_norm=self.max_grad_norm))

    def _recover(self, op: str) -> None:
        """Back to the state after the journal: load the base state, clear gradients, replay.
        Loading is idempotent and retried as it is; a replayed call is sent once, and if it
        fails the whole recovery starts over (a resent replay could be applied twice)."""
        notice(f"Tinker {op} may have been applied before it failed: restoring "
               f"{self.base_state} and replaying {len(self._journal)} calls")
        self.retrier.stats["tinker/recoveries"] += 1
        last: BaseException | None = None
        for attempt in range(1, self.retrier.policy.max_attempts + 1):
            try:
                self._restore()
                for done_op, args in self._journal:
                    wait(self._submit(done_op, args), self.retrier.policy.timeout)
                return
            except Exception as err:  # noqa: BLE001 - counted, retried, reported below
                last = err
                self.retrier.stats["tinker/errors/recovery"] += 1
                if isinstance(err, TinkerServiceError) or not is_transient(err):
                    break
                time.sleep(self.retrier.delay(attempt))
        raise TinkerServiceError(f"Tinker {op} failed, and restoring {self.base_state} to retry "
                                 f"it failed too: {describe(last) if last else '?'}") from None

    def _restore(self) -> None:
        load = lambda: self.client.load_state_with_optimizer(self.base_state)
        self.retrier.call("load_state_with_optimizer", load)
        self.retrier.call("optim_step (clear gradients)", lambda: self._submit("optim_step", 0.0))
        self.retrier.call("load_state_with_optimizer", load)

    # -- checkpoints ---------------------------------------------------------------------
    def _save_state(self, name: str) -> str:
        # a fresh name per attempt: a retried save must not collide with one that got through
        out = self.retrier.call("save_state",
                                lambda: self.client.save_state(f"{name}-{uuid.uuid4().hex[:8]}"))
        return out.path

    def reduce(self, value: float, op: str) -> float:
        return value  # one client process: nothing to combine

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self._save_state(f"{self.prefix}-{path.name}")
        (path / STATE_FILE).write_text(json.dumps({"state_path": state}) + "\n")
        self.base_state, self._journal = state, []

    def load(self, path: Path) -> None:
        state = read_state(path)
        self.retrier.call("load_state_with_optimizer",
                          lambda: self.client.load_state_with_optimizer(state))
        self.base_state, self._journal = state, []
        self._engine = None


def read_state(path: Path) -> str:
    """The tinker:// state path a checkpoint folder holds."""
    return json.loads((Path(path) / STATE_FILE).read_text())["state_path"]


def _full_rows(rows: list[list[float]], batch: RLBatch) -> torch.Tensor:
    """Per-target log-probs back into the batch's full-sequence layout ([b, t] scores the
    token at t; 0 at t = 0 and on padding)."""
    out = torch.zeros_like(batch.sampler_logprobs_B_L)
    for b, row in enumerate(rows):
        out[b, 1 : 1 + len(row)] = torch.tensor(row, dtype=out.dtype)
    return out * (batch.attention_mask_B_L > 0)
