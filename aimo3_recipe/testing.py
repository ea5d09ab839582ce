"""Tiny randomly initialised models and an offline tokenizer, for tests and smoke runs.

The tokenizer is a byte-level BPE trained in milliseconds on a small maths corpus, with a
ChatML chat template (the format of Qwen and SmolLM), so renderers, trainers and engines are
exercised exactly as with a real model, without the hub.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Solve the equation 3x + 5 = 20. Subtract 5 from both sides: 3x = 15, so x = 5.",
    "What is 12 + 35? The answer is \\boxed{47}.",
    "Compute the remainder when 2^{10} is divided by 7. Therefore, the answer is \\boxed{2}.",
    "```python\nfrom sympy import symbols, solve\nx = symbols('x')\nprint(solve(x**2 - 5*x + 6, x))\n```",
    "```output\n[2, 3]\n```",
    "Let's think step by step. The sum of the first n integers is n(n+1)/2.",
    "The greatest common divisor of 48 and 18 is 6, and the least common multiple is 144.",
    "\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}. Simplify the fraction. Problem: Answer:",
    "How many ways can 3 books be chosen from 7? \\binom{7}{3} = 35.",
    "0123456789 +-*/=()[]{}<>^_.,;:!?'\"#%&|\\ abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_tiny_tokenizer(vocab_size: int = 512):
    """A fast byte-level BPE tokenizer (deterministic) with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def make_tiny_model(tokenizer=None, *, hidden_size: int = 64, num_layers: int = 2,
                    num_heads: int = 4, seed: int = 0):
    """A randomly initialised Llama-architecture causal LM (~100k params) matching `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=hidden_size * 2, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_model(out_dir: str | Path, **kwargs) -> Path:
    """Write a tiny model + tokenizer folder loadable by `models.load_model(out_dir)`."""
    out = Path(out_dir)
    tokenizer = make_tiny_tokenizer()
    model = make_tiny_model(tokenizer, **kwargs)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


_SYNONYMS = {"Find": "Determine", "What is": "Compute", "How many": "Count how many",
             "value": "number", "If ": "Suppose ", "greatest": "largest", "can be": "may be",
             "Express your answer": "Give the answer", "Which": "What", "Enter": "Write",
             "  ": " "}


def reword_lightly(problem: str) -> str:
    """A light human-style rewording (new opening, synonyms, spacing): what a contaminated
    training set holds instead of a verbatim copy. Decontamination tests and bench use it."""
    for old, new in _SYNONYMS.items():
        problem = problem.replace(old, new)
    return "Here is a question for you. " + problem
