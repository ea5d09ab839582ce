"""The local RL backend: a transformers (+ peft LoRA) model trained with torch, under
accelerate so the same code runs on one CPU, one GPU or several processes (DDP: gloo on CPU,
NCCL on GPUs; gradients are averaged over ranks).

Rollouts come from our engines: the transformers engine sharing the live model (nothing to
sync), or vLLM, into which the new weights are pushed after every optimizer step and whose
prefix cache is reset. The push streams (name, tensor) pairs (`merged_weights`): base weights
go as they are, and each LoRA layer's merged weight W + B@A*scale is made when vLLM asks for
it, so at most one merged layer exists at a time besides the model (the old push cloned the
whole merged state dict on the device). With vLLM's sleep mode (`enable_sleep_mode`, CUDA)
the engine sleeps while the trainer computes log-probs and steps, and wakes for the sync
(weights first, then the KV cache) and the next rollouts. vLLM in bf16 drifts from an fp32
trainer (per-token log-prob gap ~0.03-0.07): turn on `tis_cap` there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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

    @property
    def policy(self):
        """The model itself (outside any DDP wrapper)."""
        return self.accelerator.unwrap_model(self.model)

    # -- sampling ------------------------------------------------------------------------
    def sampler(self) -> Engine:
        if self._vllm is not None:
            self._wake()
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
        self._wake(["weights"])  # the KV cache stays released while the weights arrive
        self._vllm.update_weights(merged_weights(self.policy))
        self._wake()
        return {"time/weight_sync": time.perf_counter() - t0}

    def _sleep(self) -> None:
        """The trainer is about to use the GPU: vLLM releases its memory (sleep mode)."""
        if self._vllm is not None and hasattr(self._vllm, "sleep"):
            self._vllm.sleep()

    def _wake(self, tags: list[str] | None = None) -> None:
        if self._vllm is not None and hasattr(self._vllm, "wake_up"):
            self._vllm.wake_up(tags)

    # -- training ------------------------------------------------------------------------
    def logprobs(self, batch: RLBatch) -> torch.Tensor:
        self._sleep()
        batch = batch.to(self.accelerator.device)
        with torch.no_grad():  # the bare model: a DDP forward would be a collective call
            lp, _ = token_logprobs(self.policy, batch.input_ids_B_L, batch.attention_mask_B_L,
                                   batch.loss_mask_B_L)
        return lp

    def forward_backward(self, batch: RLBatch, *, old_logprobs: Any, num_tokens: float,
                         loss_kwargs: dict[str, Any]) -> dict[str, float]:
        self._sleep()
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


def merged_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """Plain checkpoint-named weights of `model` with any LoRA adapter merged in (what vLLM
    loads), one at a time: weights without an adapter are the live tensors (no copy), and a
    LoRA layer's merged weight (base + peft's `get_delta_weight`, scaling and fan-in/out
    included) is made when the consumer reaches it, so no full merged copy ever exists. The
    adapter and the base weights are left untouched (no merge/unmerge rounding in bf16).
    Adapters peft merges otherwise (DoRA, LoRA bias) are merged in place while it runs."""
    if not hasattr(model, "merge_adapter"):
        for k, v in model.state_dict().items():
            yield k, v.detach()
        return
    from peft.tuners.lora import LoraLayer

    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    if any(any(m.use_dora.get(a, False) or getattr(m, "lora_bias", {}).get(a, False)
               for a in m.active_adapters) for m in layers.values()):
        yield from _merged_in_place(model)
        return
    for k, v in model.state_dict().items():
        if "lora_" in k:
            continue
        name = k.replace("base_model.model.", "", 1).replace(".base_layer", "")
        owner, _, leaf = k.rpartition(".base_layer.")
        layer = layers.get(owner) if leaf == "weight" else None
        if layer is None or layer.disable_adapters or layer.merged:
            yield name, v.detach()
            continue
        with torch.no_grad():
            w = v.detach()
            for a in layer.active_adapters:
                if a in layer.lora_A or a in getattr(layer, "lora_embedding_A", {}):
                    w = w + layer.get_delta_weight(a).to(w.dtype)
        yield name, w


def _merged_in_place(model) -> Iterator[tuple[str, torch.Tensor]]:
    model.merge_adapter()
    try:
        for k, v in model.state_dict().items():
            if "lora_" not in k:
                yield k.replace("base_model.model.", "", 1).replace(".base_layer", ""), v.detach()
    finally:
        model.unmerge_adapter()


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """`merged_weights` collected into a dict (saving the merged model/ folder, on CPU)."""
    return dict(merged_weights(model))
