"""The transformers engine on a tiny random model: shapes, padding, log-probs, stops, seeds."""

from __future__ import annotations

import pytest
import torch

from aimo3_recipe.data.renderers import encode_prompt
from aimo3_recipe.inference.engine import Completion, Engine, SamplingConfig
from aimo3_recipe.inference.hf_engine import HFEngine

PROMPTS = ["What is 12 + 35?", "Solve the equation 3x + 5 = 20 step by step, then answer."]


@pytest.fixture(scope="module")
def engine(tiny_tokenizer):
    from aimo3_recipe.testing import make_tiny_model

    return HFEngine(make_tiny_model(tiny_tokenizer), tiny_tokenizer, batch_size=8)


def test_is_an_engine_and_returns_n_per_prompt(engine):
    assert isinstance(engine, Engine)
    out = engine.generate(PROMPTS, SamplingConfig(n=3, temperature=1.0, max_tokens=8, seed=0))
    assert len(out) == 2 and all(len(c) == 3 for c in out)
    for comps in out:
        for c in comps:
            assert isinstance(c, Completion)
            assert len(c.token_ids) == len(c.logprobs) <= 8
            assert c.finish_reason in ("stop", "length")


def test_length_finish_reason(engine):
    (c,), = engine.generate(PROMPTS[:1], SamplingConfig(max_tokens=5))
    assert c.finish_reason == "length" and len(c.token_ids) == 5
    assert c.text == engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)


def test_batched_greedy_equals_one_at_a_time(engine):
    """Left padding must not change what a prompt generates."""
    cfg = SamplingConfig(max_tokens=12)
    together = engine.generate(PROMPTS, cfg)
    alone = [engine.generate([p], cfg)[0] for p in PROMPTS]
    for a, b in zip(together, alone):
        assert a[0].token_ids == b[0].token_ids
        assert a[0].logprobs == pytest.approx(b[0].logprobs, abs=1e-4)


def test_logprobs_match_a_forward_pass(engine):
    """Recorded log-probs are log softmax of the raw logits at each sampled token, even when
    sampling at a temperature (they describe the model, not the warped sampler)."""
    out = engine.generate(PROMPTS, SamplingConfig(n=2, temperature=1.5, top_p=0.9,
                                                  max_tokens=10, seed=3))
    model = engine.model
    for prompt, comps in zip(PROMPTS, out):
        p_ids = encode_prompt(engine.tokenizer, prompt)
        for c in comps:
            full = torch.tensor([p_ids + c.token_ids])
            with torch.no_grad():
                logits = model(full).logits[0, len(p_ids) - 1:-1].float().log_softmax(-1)
            expect = logits.gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1).tolist()
            assert c.logprobs == pytest.approx(expect, abs=1e-4)
            assert all(lp <= 0 for lp in c.logprobs)


def test_seed_reproducible_and_rng_untouched(engine):
    cfg = SamplingConfig(n=4, temperature=1.0, max_tokens=10, seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = engine.generate(PROMPTS, cfg)
    after = torch.rand(1)
    b = engine.generate(PROMPTS, cfg)
    c = engine.generate(PROMPTS, SamplingConfig(n=4, temperature=1.0, max_tokens=10, seed=8))
    assert [x.token_ids for x in a[0]] == [x.token_ids for x in b[0]]
    assert [x.token_ids for x in a[0]] != [x.token_ids for x in c[0]]
    assert torch.equal(before, after)  # the caller's random stream is not consumed
    assert len({tuple(x.token_ids) for x in a[0]}) > 1  # the n samples differ


def test_stop_string_cuts_text_and_keeps_completing_token(engine):
    (free,), = engine.generate(PROMPTS[:1], SamplingConfig(max_tokens=30))
    stop = free.text[6:8]
    assert len(stop) == 2
    first = free.text.find(stop)
    for include in (False, True):
        (c,), = engine.generate(PROMPTS[:1], SamplingConfig(max_tokens=30, stop=[stop],
                                                            include_stop_str=include))
        assert c.finish_reason == "stop" and c.stop_reason == stop
        assert c.text == free.text[:first] + (stop if include else "")
        # ids end at the token that completed the stop string, and are a prefix of the free run
        assert c.token_ids == free.token_ids[:len(c.token_ids)]
        assert stop in engine.tokenizer.decode(c.token_ids)
        assert stop not in engine.tokenizer.decode(c.token_ids[:-1])
        assert len(c.logprobs) == len(c.token_ids)


def test_eos_ends_completion(engine):
    (free,), = engine.generate(PROMPTS[:1], SamplingConfig(max_tokens=10))
    saved = engine.eos_ids
    engine.eos_ids = {free.token_ids[3]}  # pretend the 4th greedy token is EOS
    try:
        (c,), = engine.generate(PROMPTS[:1], SamplingConfig(max_tokens=10))
    finally:
        engine.eos_ids = saved
    first = free.token_ids.index(free.token_ids[3])
    assert c.finish_reason == "stop" and c.token_ids == free.token_ids[:first + 1]


def test_update_weights_changes_outputs(tiny_tokenizer):
    from aimo3_recipe.testing import make_tiny_model

    eng = HFEngine(make_tiny_model(tiny_tokenizer, seed=0), tiny_tokenizer)
    cfg = SamplingConfig(max_tokens=8)
    before = eng.generate(PROMPTS[:1], cfg)[0][0]
    other = make_tiny_model(tiny_tokenizer, seed=1).state_dict()
    eng.update_weights(other)
    after = eng.generate(PROMPTS[:1], cfg)[0][0]
    assert before.logprobs != pytest.approx(after.logprobs, abs=1e-3)
    with pytest.raises(ValueError):
        eng.update_weights({"not.a.weight": torch.zeros(1)})


def test_bad_config(engine):
    with pytest.raises(ValueError):
        engine.generate(PROMPTS, SamplingConfig(n=0))
