"""Per-token log-probs (and entropies) of a padded batch under a causal LM, in bounded memory.

The naive computation builds the logits of every position, batch x length x vocab, and then
a float32 copy for the log-softmax: for 128 rollouts of 2k tokens over Qwen's 152k vocabulary
that is ~160 GB. Here the model runs to its last hidden state only (`output_hidden_states`,
with `logits_to_keep=1` so the model's own head covers one position), and the LM head is
applied to the trained positions `chunk_tokens` at a time. With gradients on, each chunk is
wrapped in activation checkpointing: backward recomputes one chunk's logits at a time, so only
the hidden states are kept (what TRL's fused LM head and Liger's fused cross-entropy avoid too,
by other means). Results equal the full-logits computation (tests/test_rl_memory.py, 1e-6).

The entropy is logged, never trained: it is computed without a graph, and only at the
positions of `entropy_mask_B_L` (a sample, `entropy_sample_mask`), since the full softmax of
every position for one log line was most of the forward/backward's cost (issue 24).

Limits: models whose logits are not `lm_head(hidden)` (Gemma-2's final soft-capping,
Cohere's / Granite's logit scaling) take the plain path: full logits, rows `rows_per_chunk`
at a time.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_TOKENS = 1024  # positions per LM-head chunk (x vocab x 4 bytes of fp32 logits)


def selective_log_softmax(logits_N_V: torch.Tensor, index_N: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[index] without building the (N, V) log-softmax: gather the chosen
    logit and subtract the logsumexp, in float32 (bf16 logsumexp loses the small gaps)."""
    logits = logits_N_V.float()
    return logits.gather(-1, index_N.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits_N_V: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row's softmax, in float32."""
    logp = torch.log_softmax(logits_N_V.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def entropy_sample_mask(loss_mask_B_L: torch.Tensor, n: int) -> torch.Tensor:
    """A bool mask of at most `n` trained positions, evenly spaced over the batch's trained
    tokens in reading order (deterministic; every row represented in proportion to its
    trained tokens). n <= 0: every trained position."""
    mask = loss_mask_B_L.bool()
    total = int(mask.sum())
    if n <= 0 or total <= n:
        return mask
    flat = torch.nonzero(mask.flatten()).flatten()
    pick = flat[torch.linspace(0, total - 1, n, device=flat.device).round().long()]
    out = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    out[pick] = True
    return out.view_as(mask)


def _plain_lm_head(model: torch.nn.Module) -> bool:
    """True when the model's logits are exactly lm_head(last hidden state)."""
    config = getattr(model, "config", None)
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            return False
    return getattr(model, "get_output_embeddings", lambda: None)() is not None


def _head_logprobs(lm_head: torch.nn.Module, hidden_N_H: torch.Tensor, targets_N: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    return selective_log_softmax(lm_head(hidden_N_H) / temperature, targets_N)


def chunked_head_logprobs(lm_head: torch.nn.Module, hidden_N_H: torch.Tensor,
                          targets_N: torch.Tensor, *, temperature: float = 1.0,
                          chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """log softmax(lm_head(h) / T)[target] for N positions, `chunk_tokens` at a time; with
    gradients on, each chunk is checkpointed (its logits are rebuilt in backward, not kept)."""
    step = max(1, chunk_tokens)
    grad = torch.is_grad_enabled()
    out = []
    for s in range(0, hidden_N_H.shape[0], step):
        h, t = hidden_N_H[s:s + step], targets_N[s:s + step]
        if grad:
            # the head draws no random numbers; not saving/restoring the RNG state also keeps
            # this thread off the global generator a rollout thread samples from (overlap.py)
            out.append(checkpoint(_head_logprobs, lm_head, h, t, temperature,
                                  use_reentrant=False, preserve_rng_state=False))
        else:
            out.append(_head_logprobs(lm_head, h, t, temperature))
    return torch.cat(out) if out else hidden_N_H.new_zeros(0, dtype=torch.float32)


@torch.no_grad()
def chunked_head_entropy(lm_head: torch.nn.Module, hidden_N_H: torch.Tensor, *,
                         temperature: float = 1.0,
                         chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """Entropy of softmax(lm_head(h) / T) for N positions, `chunk_tokens` at a time, no graph."""
    step = max(1, chunk_tokens)
    out = [entropy_from_logits(lm_head(hidden_N_H[s:s + step]) / temperature)
           for s in range(0, hidden_N_H.shape[0], step)]
    return torch.cat(out) if out else hidden_N_H.new_zeros(0, dtype=torch.float32)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a DDP wrapper (for its config and LM head; the forward still goes
    through the wrapper, which is what synchronises gradients)."""
    return getattr(model, "module", model)


def token_logprobs(
    model: torch.nn.Module,
    input_ids_B_L: torch.Tensor,
    attention_mask_B_L: torch.Tensor,
    loss_mask_B_L: torch.Tensor,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    entropy_mask_B_L: torch.Tensor | None = None,
    rows_per_chunk: int | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of a right-padded batch of full sequences.

    Returns logprobs_B_L aligned with input_ids: [b, t] = log p(input_ids[b, t] | ids[b, :t])
    at the sampling `temperature` (logits / temperature, as TRL does), 0 where loss_mask is 0;
    and entropy_B_L (None unless asked) at the positions of `entropy_mask_B_L`, or of
    loss_mask with `compute_entropy`, 0 elsewhere. Rows go through the model
    `rows_per_chunk` at a time (default: all); only trained positions go through the LM head.
    The temperature must be the one the sampler's log-probs were taken at, or the ratio and
    the gap compare different policies."""
    if temperature <= 0:
        raise ValueError(f"token_logprobs: temperature must be > 0; got {temperature}")
    B, L = input_ids_B_L.shape
    train = loss_mask_B_L.bool()
    if entropy_mask_B_L is None and compute_entropy:
        entropy_mask_B_L = train
    ent_mask = None if entropy_mask_B_L is None else entropy_mask_B_L.bool() & train
    logprobs = torch.zeros(B, L, dtype=torch.float32, device=input_ids_B_L.device)
    entropy = None if ent_mask is None else torch.zeros_like(logprobs)
    cols = torch.nonzero(train.any(dim=0)).flatten()
    if cols.numel() == 0:
        return logprobs, entropy
    first = int(cols[0])
    if first == 0:
        raise ValueError("token_logprobs: loss_mask[:, 0] must be 0 (the first token has no "
                         "prefix)")
    if not _plain_lm_head(_unwrapped(model)):
        return _full_logits_path(model, input_ids_B_L, attention_mask_B_L, train, ent_mask,
                                 first, temperature, rows_per_chunk or B)
    head = _unwrapped(model).get_output_embeddings()
    lp_parts, ent_parts = [], []
    step = rows_per_chunk or B
    for start in range(0, B, step):
        rows = slice(start, start + step)
        out = model(input_ids=input_ids_B_L[rows], attention_mask=attention_mask_B_L[rows],
                    output_hidden_states=True, logits_to_keep=1, use_cache=False)
        # hidden at position t-1 predicts token t: shift by one, from the first trained token
        hidden = out.hidden_states[-1][:, first - 1:-1]
        del out
        m = train[rows, first:]
        targets = input_ids_B_L[rows, first:][m]
        lp_parts.append(chunked_head_logprobs(head, hidden[m], targets, temperature=temperature,
                                              chunk_tokens=chunk_tokens))
        if ent_mask is not None:
            e = ent_mask[rows, first:]
            ent_parts.append(chunked_head_entropy(head, hidden[e].detach(),
                                                  temperature=temperature,
                                                  chunk_tokens=chunk_tokens))
    # row chunks are consecutive, so their trained positions concatenate in reading order
    shifted = torch.zeros(B, L - first, dtype=torch.float32, device=logprobs.device)
    shifted[train[:, first:]] = torch.cat(lp_parts)
    logprobs = torch.cat([logprobs[:, :first], shifted], dim=1)
    if entropy is not None and ent_mask is not None:
        entropy[ent_mask] = torch.cat(ent_parts)
    return logprobs, entropy


def _full_logits_path(model, ids_B_L, attn_B_L, train_B_L, ent_mask_B_L, first: int,
                      temperature: float, step: int):
    """The plain computation for heads that are not a bare linear layer (see module doc)."""
    B, L = ids_B_L.shape
    keep = L - first + 1  # logits at positions first-1 .. L-1 predict tokens first .. L
    lp_chunks, ent_chunks = [], []
    for start in range(0, B, step):
        ids = ids_B_L[start:start + step]
        out = model(input_ids=ids, attention_mask=attn_B_L[start:start + step],
                    logits_to_keep=keep, use_cache=False)
        logits = out.logits[:, :-1] / temperature  # (b, L - first, V)
        targets = ids[:, first:]
        lp_chunks.append(torch.stack([selective_log_softmax(lg, tg)
                                      for lg, tg in zip(logits, targets)]))
        if ent_mask_B_L is not None:
            with torch.no_grad():
                ent_chunks.append(torch.stack([entropy_from_logits(lg) for lg in logits]))
    pad = torch.zeros(B, first, dtype=torch.float32, device=ids_B_L.device)
    logprobs = torch.cat([pad, torch.cat(lp_chunks) * train_B_L[:, first:]], dim=1)
    entropy = None
    if ent_mask_B_L is not None:
        entropy = torch.cat([pad, torch.cat(ent_chunks) * ent_mask_B_L[:, first:]], dim=1)
    return logprobs, entropy
