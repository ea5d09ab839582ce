"""Token-exact TIR rollouts on a real transformers model: what RL trains on must be exactly
the context the sampler saw.

A tiny random model is first taught (a few hundred steps, ~2 s) to write one TIR transcript,
so that greedy decoding really writes a ```python block, stops at its fence, gets the
sandbox's output and goes on. Then: the mask is 0 on exactly the tool-output tokens, the text
decoded from the sequence is the transcript, and a forward pass over prompt + sequence
reproduces the engine's log-probs of every sampled token (within 1e-4).
"""

from __future__ import annotations

import pytest
import torch

from aimo3_recipe.data.renderers import encode_prompt, encode_text, render_prompt
from aimo3_recipe.inference.engine import SamplingConfig
from aimo3_recipe.inference.hf_engine import HFEngine
from aimo3_recipe.inference.tir_executor import TIRConfig, run_tir
from aimo3_recipe.testing import make_tiny_model
from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool

PROBLEM = "What is 6 * 7?"
TRANSCRIPT = ("Let me compute.\n```python\nprint(6 * 7)\n```\n```output\n42\n```\n"
              "So the answer is \\boxed{42}.")


@pytest.fixture(scope="module")
def taught(tiny_tokenizer):
    """(engine, prompt ids): a tiny model that has memorised TRANSCRIPT after the prompt."""
    model = make_tiny_model(tiny_tokenizer, hidden_size=64, num_layers=2, seed=1)
    prompt = render_prompt(tiny_tokenizer, PROBLEM, mode="tir")
    p_ids = encode_prompt(tiny_tokenizer, prompt)
    ids = p_ids + encode_text(tiny_tokenizer, TRANSCRIPT) + [tiny_tokenizer.eos_token_id]
    x = torch.tensor([ids])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    return HFEngine(model.eval(), tiny_tokenizer), p_ids


@pytest.fixture(scope="module")
def rollout(taught):
    engine, p_ids = taught
    with SandboxPool(size=1, config=SandboxConfig(timeout_s=5.0)) as pool:
        (r,), = run_tir(engine, [p_ids], SamplingConfig(n=1, max_tokens=120),
                        TIRConfig(max_tool_calls=2), pool=pool)
    return r


def test_the_taught_model_really_uses_the_tool(rollout):
    assert rollout.num_code_calls == 1 and rollout.num_code_errors == 0
    assert "```output\n42\n```\n" in rollout.text


def test_mask_is_zero_on_exactly_the_tool_output(taught, rollout):
    engine, _ = taught
    assert len(rollout.token_ids) == len(rollout.mask) == len(rollout.logprobs)
    tool_ids = [ids for (_, src), ids in zip(rollout.segments, rollout.segment_token_ids)
                if src == "tool"]
    assert tool_ids == [encode_text(engine.tokenizer, "```output\n42\n```\n")]
    masked_out = [t for t, m in zip(rollout.token_ids, rollout.mask) if not m]
    assert masked_out == tool_ids[0]
    # the zeros form one run, exactly where the tool segment sits
    start = len(rollout.segment_token_ids[0])
    assert rollout.mask == [1] * start + [0] * len(tool_ids[0]) + \
        [1] * (len(rollout.mask) - start - len(tool_ids[0]))
    assert all(lp == 0.0 for lp, m in zip(rollout.logprobs, rollout.mask) if not m)


def test_decoded_sequence_is_the_transcript(taught, rollout):
    engine, _ = taught
    assert engine.tokenizer.decode(rollout.token_ids, skip_special_tokens=True) == rollout.text
    assert rollout.model_text == rollout.text.replace("```output\n42\n```\n", "")


def test_forward_pass_reproduces_the_sampler_logprobs(taught, rollout):
    engine, p_ids = taught
    full = torch.tensor([p_ids + rollout.token_ids])
    with torch.no_grad():
        logits = engine.model(full).logits[0, len(p_ids) - 1:-1].float().log_softmax(-1)
    trainer = logits.gather(1, torch.tensor(rollout.token_ids)[:, None]).squeeze(1)
    for lp, m, t in zip(rollout.logprobs, rollout.mask, trainer.tolist()):
        if m:
            assert lp == pytest.approx(t, abs=1e-4)
