"""The transformers `generate` engine: runs anywhere torch runs (CPU, CUDA, MPS); the fallback
when vLLM is not installed, and the engine that shares the live model with a local trainer.

It implements `Engine` (engine.py): batched prompts, `n` samples each (one `generate` call per
batch with `num_return_sequences=n`), left padding, prompts sorted by length to waste less
padding, stop strings matched in the generated text only (the text is cut at the first stop
string, the token ids keep the token that completed it, as vLLM does), a seed applied to a
forked RNG so the caller's random state is untouched.

Log-probs are those of the raw model distribution (softmax of the logits at temperature 1,
before temperature / top-p), the same quantity vLLM returns by default (`raw_logprobs`), so
weighted voting and RL see one meaning on both engines. They are recorded one step at a time
by a logits processor, never by keeping every step's full-vocabulary logits (which would be
batch x tokens x vocab floats: gigabytes for a 49k vocabulary).

Context window: `max_model_len` (default: the model config's `max_position_embeddings`) bounds
prompt + completion, as in vLLM: each completion ends ("length") where its own prompt fills the
window, and a prompt that fills it alone raises `ContextWindowError`.

Limits: no KV-cache reuse across calls (a TIR continuation re-encodes its prefix; vLLM's prefix
caching does not), and no continuous batching: a batch runs until its longest member stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ContextWindowError
from aimo3_recipe.inference.engine import Completion, SamplingConfig, TextPrompts
from aimo3_recipe.inference.stop_strings import cut_at_markers, stop_prefix_len


class _LogprobRecorder:
    """Logits processor that records log p(sampled token) per step from the unwarped logits.

    At step t it sees the token chosen at step t-1 (the last input id), so it keeps only the
    previous step's log-softmax (batch x vocab), not all of them.
    """

    def __init__(self, top_k: int = 0) -> None:
        self.prev = None  # log-softmax of the previous step's logits, (B, V)
        self.steps: list[Any] = []  # one (B,) tensor per generated token
        self.top_k = top_k  # also keep the k largest log-probs of each step (token entropy)
        self.top_steps: list[Any] = []  # one (B, k) tensor per generated token

    def __call__(self, input_ids, scores):
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = scores.float().log_softmax(-1)
        if self.top_k:
            self.top_steps.append(self.prev.topk(min(self.top_k, self.prev.shape[-1]), -1).values)
        return scores

    def finish(self, sequences, num_new: int):
        """(B, num_new) log-probs of the generated tokens, once generation has ended."""
        import torch

        if self.prev is not None and len(self.steps) < num_new:
            self.steps.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
        if not self.steps:
            return torch.zeros(sequences.shape[0], 0)
        return torch.stack(self.steps[:num_new], dim=1)

    def finish_top(self, num_new: int):
        """(B, num_new, k) top-k log-probs of each generation step, or None (top_k 0)."""
        import torch

        if not self.top_k or not self.top_steps:
            return None
        return torch.stack(self.top_steps[:num_new], dim=1)


class _StopOnText:
    """Stopping criterion: a row is done once its *generated* text contains a stop string.

    transformers' own `StopStringCriteria` also matches across the prompt boundary (a prompt
    ending in "?" plus a generated "?" matches the stop "??"), which vLLM never does; decoding
    only each row's last few generated tokens keeps the two engines in agreement.
    """

    def __init__(self, tokenizer, stops: list[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len
        self.window = max(len(s) for s in stops) + 4  # tokens: each covers >= 1 character

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        tails = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts],
                            dtype=torch.bool, device=input_ids.device)


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids


class HFEngine(TextPrompts):
    """`Engine` over a transformers causal LM (a loaded model, or anything `load_model` takes)."""

    def __init__(self, model: Any, tokenizer: Any = None, *, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 32,
                 max_model_len: int | None = None):
        from aimo3_recipe.models import load_model, load_tokenizer

        if isinstance(model, (str, Path)):
            tokenizer = tokenizer or load_tokenizer(model)
            model = load_model(model, device=device, dtype=dtype)
        if tokenizer is None:
            raise ValueError("HFEngine got a model object but no tokenizer; pass tokenizer=...")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # decoder-only generation needs left padding
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))  # sequences (prompts x n) per generate call
        self.eos_ids = _eos_ids(model, tokenizer)
        # the context window (prompt + generated tokens): the model's position limit unless
        # set lower; no completion runs past it (vLLM's max_model_len does the same)
        self.max_model_len: int | None = max_model_len or getattr(
            getattr(model, "config", None), "max_position_embeddings", None)

    # -- Engine --------------------------------------------------------------------------
    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]:
        import torch

        if config.n < 1 or config.max_tokens < 1:
            raise ValueError(f"SamplingConfig needs n >= 1 and max_tokens >= 1; got {config}")
        ids = [list(p) for p in prompts]
        too_long = [len(p) for p in ids if self.max_model_len and len(p) >= self.max_model_len]
        if too_long:
            raise ContextWindowError(
                f"a prompt of {max(too_long)} tokens leaves no room in the context window "
                f"(max_model_len {self.max_model_len}): shorten the prompt or raise "
                "max_model_len (at most the model's max_position_embeddings)")
        order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
        per_call = max(1, self.batch_size // config.n)
        results: list[list[Completion]] = [[] for _ in prompts]
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if config.seed is not None:
                torch.manual_seed(config.seed)
            for start in range(0, len(order), per_call):
                idx = order[start:start + per_call]
                outs = self._generate_batch([ids[i] for i in idx], config)
                for j, i in enumerate(idx):
                    results[i] = outs[j * config.n:(j + 1) * config.n]
        return results

    def _generate_batch(self, prompt_ids: list[list[int]],
                        config: SamplingConfig) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        enc = self.tokenizer.pad({"input_ids": prompt_ids}, padding=True,
                                 return_tensors="pt").to(self.model.device)
        sample = config.temperature > 0
        # per sequence: tokens left in the context window after its own (unpadded) prompt
        rooms = [config.max_tokens if not self.max_model_len
                 else min(config.max_tokens, self.max_model_len - len(p))
                 for p in prompt_ids for _ in range(config.n)]
        gen_config = GenerationConfig(
            max_new_tokens=max(rooms), do_sample=sample,
            temperature=config.temperature if sample else None,
            top_p=config.top_p if sample else None, top_k=None,
            num_return_sequences=config.n, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids) or None,
            return_dict_in_generate=False)
        prompt_len = enc["input_ids"].shape[1]
        stops = [s for s in config.stop if s]
        criteria = [_StopOnText(self.tokenizer, stops, prompt_len)] if stops else []
        recorder = (_LogprobRecorder(config.top_logprobs)
                    if config.logprobs or config.top_logprobs else None)
        with torch.inference_mode():
            seqs = self.model.generate(
                **enc, generation_config=gen_config,
                stopping_criteria=StoppingCriteriaList(criteria),
                logits_processor=LogitsProcessorList([recorder] if recorder else []))
        new = seqs[:, prompt_len:]
        lps = recorder.finish(seqs, new.shape[1]).tolist() if recorder else None
        top = recorder.finish_top(new.shape[1]) if recorder else None
        top = top.tolist() if top is not None else None
        return [self._to_completion(new[r].tolist()[:rooms[r]], lps[r] if lps else None, config,
                                    top[r] if top else None)
                for r in range(new.shape[0])]

    def _to_completion(self, ids: list[int], lps: list[float] | None,
                       config: SamplingConfig,
                       top: list[list[float]] | None = None) -> Completion:
        """Cut one generated row at EOS / first stop string and say why it ended."""
        finish, stop_reason = "length", None
        eos_at = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        if eos_at is not None:
            ids, finish = ids[:eos_at + 1], "stop"
        elif self.tokenizer.pad_token_id is not None:
            while ids and ids[-1] == self.tokenizer.pad_token_id:  # row stopped before others
                ids, finish = ids[:-1], "stop"
        decode = lambda t: self.tokenizer.decode(t, skip_special_tokens=True)  # noqa: E731
        text = decode(ids)
        end = stop_prefix_len(ids, decode, config.stop)
        if end is not None:  # cut at the token that completed the first stop string
            ids, finish = ids[:end], "stop"
            text, stop_reason, _ = cut_at_markers(decode(ids), config.stop)
            if stop_reason is not None and not config.include_stop_str:
                text = text[:-len(stop_reason)]
        return Completion(text=text, token_ids=ids,
                          logprobs=[float(x) for x in lps[:len(ids)]] if lps is not None else None,
                          finish_reason=finish, stop_reason=stop_reason,
                          top_logprobs=top[:len(ids)] if top is not None else None)

    # -- weights (RL) --------------------------------------------------------------------
    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Load new weights (a full or partial state dict) into the served model in place."""
        missing_ok = self.model.load_state_dict(state_dict, strict=False)
        unexpected = getattr(missing_ok, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"update_weights got keys the model does not have: {unexpected[:5]}")
