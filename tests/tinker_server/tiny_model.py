"""The tiny model the test server serves: our offline tokenizer (ChatML) and a 2-layer Llama
with untied embeddings and a wide initialisation. With the default init (std 0.02, tied
embeddings) the logits hardly move under LoRA (measured on SkyRL: loss 6.2 -> 5.5 in 15 steps
at lr 1e-2); with this one the same probe falls 7.8 -> 0.01."""

from __future__ import annotations

from pathlib import Path


def save_server_model(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from aimo3_recipe.testing import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=4096, tie_word_embeddings=False,
                      initializer_range=0.25, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return Path(out)


def write_short_answers(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Problems 'What is a + b?' with the solution '\\boxed{a+b}': short rollouts that end."""
    import json
    import random

    rng = random.Random(seed)
    with Path(path).open("w") as f:
        for _ in range(n):
            a, b = rng.randint(0, 4), rng.randint(0, 5)
            f.write(json.dumps({"problem": f"What is {a} + {b}?",
                                "solution": f"\\boxed{{{a + b}}}", "answer": str(a + b)}) + "\n")
    return Path(path)
