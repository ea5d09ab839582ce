"""The local RL backend: a transformers (+ peft LoRA) model trained with torch, under
accelerate so the same code runs on one CPU, one GPU or several processes (DDP: gloo on CPU,
NCCL on GPUs; gradients are averaged over ranks).

Rollouts come from our engines: the transformers engine sharing the live model (nothing to
sync), or vLLM, into which the new weights are pushed after every optimizer step (LoRA merged
in for the push, then unmerged) and whose prefix cache is reset. vLLM in bf16 drifts from an
fp32 trainer (per-token log-prob gap ~0.03-0.07): turn on `tis_cap` there.

Off-policy rollouts (rl/overlap.py) need a sampler apart from the live model:
`sampler_weights` copies the weights on the training thread, `detached_sampler` loads a copy
into vLLM or into the transformers engine's own copy of the model (made once: twice the
model's memory) on the rollout thread.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from aimo3_recipe.inference.engine import Engine
from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.loss import policy_loss, token_logprobs


class LocalBackend:
    def __init__(self, model, tokenizer, *, learning_rate: float, max_grad_norm: float = 1.0,
                 vllm_engine: Engine | None = None, accelerator=None) -> None:
        from accelerate import Accelerator

        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.tokenizer = tokenizer
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("LocalBackend: the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.max_grad_norm = max_grad_norm
        self._vllm = vllm_engine
        self._hf = None
        self._hf_detached = None  # off-policy rollouts: an engine over a copy of the model

    @property
    def policy(self):
        """The model itself (outside any DDP wrapper)."""
        return self.accelerator.unwrap_model(self.model)

    # -- sampling ------------------------------------------------------------------------
    def sampler(self) -> Engine:
        if self._vllm is not None:
            return self._vllm
        if self._hf is None:
            from aimo3_recipe.inference.hf_engine import HFEngine

            self._hf = HFEngine(self.policy, self.tokenizer)
        self.policy.eval()
        return self._hf

    def sync_sampler(self) -> dict[str, float]:
        if self._vllm is None:
            return {}
        t0 = time.perf_counter()
        self._vllm.update_weights(merged_state_dict(self.policy))
        return {"time/weight_sync": time.perf_counter() - t0}

    def sampler_weights(self) -> dict[str, torch.Tensor]:
        """A copy of the weights now: all of them, LoRA merged (vLLM), or the trainable ones
        (the transformers engine's copy of the model has the frozen ones already)."""
        if self._vllm is None:
            return trainable_state(self.policy)
        state = merged_state_dict(self.policy)  # with LoRA: fresh tensors already
        if not hasattr(self.policy, "merge_adapter"):  # the live parameters: copy them
            state = {k: v.to("cpu", copy=True) for k, v in state.items()}
        return state

    def detached_sampler(self, weights: dict[str, torch.Tensor]) -> Engine:
        """vLLM with `weights` pushed in, or the transformers engine over a copy of the
        model (made once: twice the model's memory) with `weights` loaded."""
        if self._vllm is not None:
            self._vllm.update_weights(weights)
            return self._vllm
        if self._hf_detached is None:
            import copy

            from aimo3_recipe.inference.hf_engine import HFEngine

            model = copy.deepcopy(self.policy).eval().requires_grad_(False)
            self._hf_detached = HFEngine(model, self.tokenizer)
        with torch.no_grad():
            found = self._hf_detached.model.load_state_dict(weights, strict=False)
        if found.unexpected_keys:
            raise ValueError(f"detached_sampler: weights this model lacks: "
                             f"{found.unexpected_keys[:3]}")
        return self._hf_detached

    # -- training ------------------------------------------------------------------------
    def logprobs(self, batch: RLBatch) -> torch.Tensor:
        batch = batch.to(self.accelerator.device)
        with torch.no_grad():  # the bare model: a DDP forward would be a collective call
            lp, _ = token_logprobs(self.policy, batch.input_ids_B_L, batch.attention_mask_B_L,
                                   batch.loss_mask_B_L)
        return lp

    def forward_backward(self, batch: RLBatch, *, old_logprobs: Any, num_tokens: float,
                         loss_kwargs: dict[str, Any]) -> dict[str, float]:
        self.model.train()
        batch = batch.to(self.accelerator.device)
        lp, entropy = token_logprobs(self.model, batch.input_ids_B_L, batch.attention_mask_B_L,
                                     batch.loss_mask_B_L, compute_entropy=True)
        old = None if old_logprobs is None else old_logprobs.to(lp.device)
        loss, metrics = policy_loss(lp, old, batch.advantages_B, batch.loss_mask_B_L,
                                    sampler_logprobs_B_T=batch.sampler_logprobs_B_L,
                                    entropy_B_T=entropy, num_tokens=num_tokens, **loss_kwargs)
        self.accelerator.backward(loss)
        return metrics

    def optim_step(self) -> dict[str, float]:
        norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"train/grad_norm": float(norm)}

    def close(self) -> None:
        """Stop the vLLM engine now (its process otherwise lives to interpreter exit and
        holds its memory while the next stage or evaluation starts another)."""
        if self._vllm is not None and hasattr(self._vllm, "close"):
            self._vllm.close()
        self._vllm = None

    def reduce(self, value: float, op: str) -> float:
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self.accelerator.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return float(t.item())

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            torch.save({"trainable": trainable_state(self.policy),
                        "optimizer": self.optimizer.state_dict()}, path / "trainer.pt")
        self.accelerator.wait_for_everyone()

    def load(self, path: Path) -> None:
        state = torch.load(Path(path) / "trainer.pt", map_location="cpu", weights_only=False)
        missing = self.policy.load_state_dict(state["trainable"], strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"checkpoint {path} has keys this model lacks: "
                             f"{missing.unexpected_keys[:3]}; was it saved from another model?")
        self.optimizer.load_state_dict(state["optimizer"])
        if self._vllm is not None:
            self.sync_sampler()


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that train (the LoRA adapter, or every weight in full fine-tuning)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """Plain checkpoint-named weights of `model` with any LoRA adapter merged in (what vLLM
    loads), leaving the trainable adapter as it was."""
    if not hasattr(model, "merge_adapter"):
        return {k: v.detach() for k, v in model.state_dict().items()}
    model.merge_adapter()
    try:
        state = {}
        for k, v in model.state_dict().items():
            if "lora_" in k:
                continue
            name = k.replace("base_model.model.", "", 1).replace(".base_layer", "")
            state[name] = v.detach().clone()
    finally:
        model.unmerge_adapter()
    return state
