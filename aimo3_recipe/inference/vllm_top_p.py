"""Exact nucleus (top-p) sampling for vLLM without sorting the vocabulary every step.

vLLM's CPU sampler (and its GPU one where Triton is absent) applies top-p by sorting every
row of the logits: 256 sequences x 49k vocabulary per decode step. On a 2-core CPU that sort
took more than half of each step (measured: 216 tok/s with top_p=0.95 vs 463 tok/s with
top_p=1.0 on the embedded default, 128 sequences). Nucleus sets at sampling temperatures are
small, so `top_p_mask` finds the cut among the top `k` logits (a partial `topk`) and sorts a
full row only when the nucleus is wider than `k` tokens, giving the same kept set.

`FastTopP` is a vLLM v1 logits processor (the documented `logits_processors=` extension
point): the engine sends `top_p=1.0` to vLLM and the real value in
`SamplingParams.extra_args[EXTRA_ARG]`. Being argmax-invariant, the processor runs where
vLLM's own top-p would: after temperature, on sampled rows only. It masks the tokens outside
the nucleus and vLLM samples from what is left. Raw log-probs are taken before processors,
so they do not change.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

EXTRA_ARG = "aimo3_top_p"


def top_p_mask(logits: torch.Tensor, top_p: torch.Tensor, k: int = 128) -> torch.Tensor:
    """Boolean (rows, vocab) mask of the tokens OUTSIDE the nucleus of softmax(logits).

    A token is kept when the probability mass of the tokens ranked above it is < top_p (so
    the most likely token is always kept): vLLM's and transformers' rule. Tokens tied with
    the last kept one are kept too."""
    logits = logits.float()
    top_p = top_p.masked_fill(top_p >= 1.0, float("inf"))  # p = 1 keeps every token
    k = min(k, logits.shape[-1])
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    vals, _ = logits.topk(k, dim=-1)  # descending
    probs = (vals - lse).exp()
    above = probs.cumsum(-1) - probs  # mass ranked strictly above each of the top k
    kept = (above < top_p.unsqueeze(1)).sum(-1)  # >= 1: `above` of the first is 0
    thresh = vals.gather(1, (kept - 1).unsqueeze(1))
    wide = kept == k  # the nucleus may reach past the top k: decide on the full row
    if wide.any():
        rows = logits[wide]
        srt, _ = rows.sort(dim=-1, descending=True)
        p = (srt - lse[wide]).exp()
        n = ((p.cumsum(-1) - p) < top_p[wide].unsqueeze(1)).sum(-1)
        thresh[wide] = srt.gather(1, (n - 1).unsqueeze(1))
    return logits < thresh


class FastTopP(LogitsProcessor):
    """Masks each request's logits to its nucleus; requests without `EXTRA_ARG` are left alone."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, float] = {}  # batch row -> top_p

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        p = (sampling_params.extra_args or {}).get(EXTRA_ARG)
        if p is not None and not 0.0 < float(p) <= 1.0:
            raise ValueError(f"{EXTRA_ARG} must be in (0, 1]; got {p}")

    def is_argmax_invariant(self) -> bool:
        return True  # the most likely token is always kept: greedy rows need not be touched

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        def state(params, _prompt_ids, _output_ids):
            p = (params.extra_args or {}).get(EXTRA_ARG)
            if p is None or float(p) >= 1.0 or params.temperature <= 0:
                return None
            return float(p)

        process_dict_updates(self.rows, batch_update, state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        idx = torch.tensor(list(self.rows), dtype=torch.long, device=logits.device)
        p = torch.tensor(list(self.rows.values()), dtype=torch.float32, device=logits.device)
        sub = logits.index_select(0, idx)  # already divided by temperature (see above)
        mask = top_p_mask(sub, p)
        logits.index_copy_(0, idx, sub.masked_fill(mask, float("-inf")))
        return logits
