"""RL weight sync without a second full copy of the model (issue 22 item 2).

The push used to clone the whole merged state dict (on the GPU, where the policy lives);
`merged_weights` streams (name, tensor) pairs: the live tensors where there is no adapter,
and each LoRA layer's merged weight made only when the consumer reaches it. Checked against
peft's own full merge to 1e-6, and lazily: after taking the first merged layer, only that
layer's delta has been computed.
"""

from __future__ import annotations

import copy

import pytest
import torch

from aimo3_recipe.rl.local_backend import merged_state_dict, merged_weights
from aimo3_recipe.testing import make_tiny_model, make_tiny_tokenizer

peft = pytest.importorskip("peft")


def lora_model(seed: int = 0):
    torch.manual_seed(seed)
    model = make_tiny_model(make_tiny_tokenizer())
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                          lora_dropout=0.0)
    model = peft.get_peft_model(model, cfg)
    with torch.no_grad():  # B starts at zero: make the adapter do something
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return model


def test_streamed_merge_equals_peft_full_merge():
    model = lora_model()
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    streamed = dict(merged_weights(model))
    assert set(streamed) == set(reference)
    for k, ref in reference.items():
        assert torch.allclose(streamed[k], ref, atol=1e-6, rtol=0), k
    base_q = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.allclose(streamed["model.layers.0.self_attn.q_proj.weight"], base_q)
    after = model.state_dict()  # the adapter and base weights are as they were
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_merge_is_made_one_layer_at_a_time(monkeypatch):
    from peft.tuners.lora import Linear as LoraLinear

    model = lora_model()
    made: list[int] = []
    real = LoraLinear.get_delta_weight

    def counting(self, adapter):
        made.append(id(self))
        return real(self, adapter)

    monkeypatch.setattr(LoraLinear, "get_delta_weight", counting)
    stream = merged_weights(model)
    live = {p.data_ptr() for p in model.parameters()}
    copies = 0
    for name, tensor in stream:
        if tensor.data_ptr() in live:
            continue  # a live tensor, not a copy
        copies += 1
        # when a merged layer is handed out, exactly the deltas of the layers so far exist
        assert len(made) == copies, name
    n_lora = sum(isinstance(m, LoraLinear) for m in model.modules())
    assert copies == n_lora == len(made)  # one new tensor per LoRA layer, nothing else copied


def test_full_fine_tuning_streams_the_live_tensors():
    model = make_tiny_model(make_tiny_tokenizer())
    live = {p.data_ptr() for p in model.parameters()}
    assert all(t.data_ptr() in live for _, t in merged_weights(model))
    assert set(merged_state_dict(model)) == set(model.state_dict())


@pytest.mark.vllm
@pytest.mark.slow
def test_streamed_lora_weights_reach_an_in_process_vllm(embedded_model_dir, monkeypatch):
    """The stream goes into vLLM as `reload_weights(weights_iterator=...)` (engine core in
    this process, as the RL stage runs it): vLLM then scores a completion like the
    transformers model with the adapter merged (the same tokens, log-probs within 2e-2)."""
    pytest.importorskip("vllm")
    from transformers import AutoModelForCausalLM

    from aimo3_recipe.inference.engine import SamplingConfig
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.inference.vllm_config import RolloutVLLMConfig
    from aimo3_recipe.inference.vllm_engine import VLLMEngine

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    engine = VLLMEngine(embedded_model_dir, seed=0, dtype="float32", enforce_eager=True,
                        config=RolloutVLLMConfig(max_model_len=512), weight_updates=True)
    try:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
        model = peft.get_peft_model(base, peft.LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        prompt = engine.encode("What is 2 + 3?")
        cfg = SamplingConfig(max_tokens=8)
        (before,), = engine.generate_tokens([prompt], cfg)
        engine.update_weights(merged_weights(model))
        engine.sleep()  # CPU: a no-op, said once
        engine.wake_up()
        (after,), = engine.generate_tokens([prompt], cfg)
        merged = copy.deepcopy(model).merge_and_unload()
        (ref,), = HFEngine(merged, engine.tokenizer, device="cpu").generate_tokens([prompt], cfg)
        assert after.token_ids == ref.token_ids
        assert after.logprobs == pytest.approx(ref.logprobs, abs=2e-2)
        assert after.logprobs != pytest.approx(before.logprobs, abs=1e-3)  # it did change
    finally:
        engine.close()
