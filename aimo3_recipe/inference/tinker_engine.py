"""A Tinker sampling client as an `Engine`: token ids in, completions with the sampler's
per-token log-probs out, so RL rollouts, TIR and evaluation run on Tinker unchanged.

All prompts of a call are submitted at once (the service batches them) and then collected;
each request goes through `utils.tinker_sdk.Retrier` (sampling is read-only, so a retry is
always safe). Stopping: generation stops at the tokenizer's EOS id (sent as a stop token;
SkyRL's server, unlike our local engines, does not stop at EOS by itself). Stop strings are
sent as strings together with the EOS text where the config has them; ids past the first EOS
are dropped here, and the TIR executor cuts anything sampled past a stop marker, as it does
for every engine. Log-probs are the raw model's (temperature 1), as our other engines return.
"""

from __future__ import annotations

from typing import Any

from aimo3_recipe.inference.engine import Completion, SamplingConfig, TextPrompts
from aimo3_recipe.utils.tinker_sdk import Retrier


class TinkerEngine(TextPrompts):
    def __init__(self, sampling_client: Any, tokenizer: Any, retrier: Retrier | None = None) -> None:
        self.client = sampling_client
        self.tokenizer = tokenizer
        self.retrier = retrier or Retrier()
        eos = tokenizer.eos_token_id
        self._eos_ids = [eos] if isinstance(eos, int) else list(eos or [])

    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]:
        from tinker import types

        params = types.SamplingParams(max_tokens=config.max_tokens, temperature=config.temperature,
                                      top_p=config.top_p, seed=config.seed,
                                      stop=self._stop(config))
        futures = [self.client.sample(prompt=types.ModelInput.from_ints(list(p)),
                                      num_samples=config.n, sampling_params=params)
                   for p in prompts]
        out = []
        for p, fut in zip(prompts, futures):
            first = [fut]  # the future already submitted is the first attempt

            def attempt(p=p, first=first):
                if first:
                    return first.pop()
                return self.client.sample(prompt=types.ModelInput.from_ints(list(p)),
                                          num_samples=config.n, sampling_params=params)

            response = self.retrier.call("sample", attempt)
            out.append([self._completion(s) for s in response.sequences])
        return out

    def _stop(self, config: SamplingConfig) -> list[int] | list[str]:
        stops = [s for s in config.stop if s]
        if not stops:
            return list(self._eos_ids)
        eos_text = [self.tokenizer.convert_ids_to_tokens(i) for i in self._eos_ids]
        return stops + [t for t in eos_text if isinstance(t, str)]

    def _completion(self, seq: Any) -> Completion:
        ids = list(seq.tokens)
        lps = list(seq.logprobs) if seq.logprobs is not None else None
        finish = "stop" if getattr(seq, "stop_reason", "length") == "stop" else "length"
        cut = next((i for i, t in enumerate(ids) if t in self._eos_ids), None)
        if cut is not None:
            ids, finish = ids[:cut + 1], "stop"
            lps = lps[:cut + 1] if lps is not None else None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=ids, logprobs=lps, finish_reason=finish)
