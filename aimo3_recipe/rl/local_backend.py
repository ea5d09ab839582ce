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
trainer (per-token log-prob gap ~0.03-0.07): turn on `rl.loss.tis_cap` there.

The loss is `rl.loss.policy_loss` with the `rl.loss` section's settings (`loss_args`); the KL
term's reference (`rl.loss.beta` > 0) is the base model with the LoRA adapter switched off,
so it costs one forward pass and no second copy of the weights (full fine-tuning has no such
reference: rl_math.py refuses beta there).

Memory (issue 22): log-probs go through the LM head in chunks (rl/logprobs.py), the entropy
metric is taken on a sample of positions, activations can be recomputed in backward
(`gradient_checkpointing`), and the old-policy forward splits rows by the micro-batch token
budget. Precision: an fp32 model with `autocast_dtype=torch.bfloat16` keeps fp32 master
weights and computes in bf16 (rl_math does this for full fine-tuning: in pure bf16 an update
of 1e-6 to a weight of 0.02 rounds away). torch.autocast rather than accelerate's
`mixed_precision`, which is fixed per process at the first Accelerator.

Off-policy rollouts (rl/overlap.py) need a sampler apart from the live model:
`sampler_weights` copies the weights on the training thread, `detached_sampler` loads a copy
into vLLM or into the transformers engine's own copy of the model (made once: twice the
model's memory) on the rollout thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aimo3_recipe.inference.engine import Engine
from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.config import LossConfig
from aimo3_recipe.rl.logprobs import DEFAULT_CHUNK_TOKENS, entropy_sample_mask, token_logprobs
from aimo3_recipe.rl.loss import loss_args, masked_mean, old_logprobs_for, policy_loss


class LocalBackend:
    def __init__(self, model, tokenizer, *, learning_rate: float, max_grad_norm: float = 1.0,
                 vllm_engine: Engine | None = None, accelerator=None,
                 gradient_checkpointing: bool = False,
                 logprob_chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                 entropy_sample_tokens: int = 0, max_tokens_per_microbatch: int = 0,
                 autocast_dtype: torch.dtype | None = None) -> None:
        from accelerate import Accelerator

        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.chunk_tokens = logprob_chunk_tokens
        self.entropy_sample_tokens = entropy_sample_tokens
        self.max_tokens_per_microbatch = max_tokens_per_microbatch
        self.autocast_dtype = autocast_dtype
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
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
        rows = None  # rows per forward: the micro-batch token budget, as in training
        if self.max_tokens_per_microbatch > 0:
            rows = max(1, self.max_tokens_per_microbatch // batch.input_ids_B_L.shape[1])
        # the bare model: a DDP forward would be a collective call
        with torch.no_grad(), self._autocast():
            lp, _ = token_logprobs(self.policy, batch.input_ids_B_L, batch.attention_mask_B_L,
                                   batch.loss_mask_B_L, rows_per_chunk=rows,
                                   chunk_tokens=self.chunk_tokens)
        return lp

    def ref_logprobs(self, batch: RLBatch) -> torch.Tensor:
        """The KL reference's log-probs: the base model, adapter off (no gradient)."""
        policy = self.policy
        if not hasattr(policy, "disable_adapter"):
            raise ValueError("rl.loss.beta > 0 needs a LoRA policy (the reference is the base "
                             "model with the adapter off)")
        with torch.no_grad(), policy.disable_adapter(), self._autocast():
            lp, _ = token_logprobs(policy, batch.input_ids_B_L, batch.attention_mask_B_L,
                                   batch.loss_mask_B_L, chunk_tokens=self.chunk_tokens)
        return lp

    def forward_backward(self, batch: RLBatch, *, old_logprobs: Any, num_tokens: float,
                         loss: LossConfig) -> dict[str, float]:
        self._sleep()
        batch = batch.to(self.accelerator.device)
        ref = self.ref_logprobs(batch) if loss.beta else None
        self.model.train()
        ent_mask = entropy_sample_mask(batch.loss_mask_B_L, self.entropy_sample_tokens)
        with self._autocast():
            lp, entropy = token_logprobs(self.model, batch.input_ids_B_L,
                                         batch.attention_mask_B_L, batch.loss_mask_B_L,
                                         entropy_mask_B_L=ent_mask,
                                         chunk_tokens=self.chunk_tokens)
        old = old_logprobs_for(loss, None if old_logprobs is None else old_logprobs.to(lp.device),
                               batch.sampler_logprobs_B_L)
        value, metrics = policy_loss(lp, old, batch.advantages_B, batch.loss_mask_B_L,
                                     sampler_logprobs_B_T=batch.sampler_logprobs_B_L,
                                     ref_logprobs_B_T=ref, num_tokens=num_tokens,
                                     **loss_args(loss))
        if entropy is not None:  # over the sampled positions only
            metrics["train/entropy"] = masked_mean(entropy, ent_mask.float()).item()
        self.accelerator.backward(value)
        return metrics

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=self.autocast_dtype)

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


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in backward (transformers' own switch;
    non-reentrant, so a LoRA model's frozen embeddings need no input gradients)."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "config"):
        model.config.use_cache = False


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
