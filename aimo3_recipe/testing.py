"""Tiny randomly initialised models, an offline tokenizer and scripted engines, for tests and
smoke runs (tests and bench/ import their stand-ins from here, never from each other).

The tokenizer is a byte-level BPE trained in milliseconds on a small maths corpus, with a
ChatML chat template (the format of Qwen and SmolLM), so renderers, trainers and engines are
exercised exactly as with a real model, without the hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimo3_recipe.inference.engine import Completion, SamplingConfig, TextPrompts

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
                    num_heads: int = 4, seed: int = 0, max_position_embeddings: int = 4096):
    """A randomly initialised Llama-architecture causal LM (~100k params) matching `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=hidden_size * 2, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
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


# ---------------------------------------------------------------- engines for tests
# Stand-ins for a model, written in text and served as tokens like a real engine: their token
# ids are the tokenizer's encoding of the text they reply, so the token-exact TIR loop, the
# evaluation and the selection code run on them unchanged.

class CharTokenizer:
    """One character = one token (id = code point): a scripted engine's text and ids agree
    exactly, so tests can count tokens by counting characters."""

    chat_template = None
    bos_token = eos_token = pad_token = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


@dataclass
class Reply:
    """One scripted completion."""

    text: str
    finish_reason: str = "stop"
    logprob: float | None = -0.1  # every token's log-prob (None: the engine gives none)


class TextEngine(TextPrompts):
    """Base of the test engines: subclasses say what the model writes (`reply` per sample, or
    `replies` per batch); prompts given as ids are decoded (special tokens kept) first."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls = 0  # generate calls

    def reply(self, prompt: str, config: SamplingConfig, index: int) -> Reply | str:
        raise NotImplementedError

    def replies(self, prompts: list[str], config: SamplingConfig) -> list[list[Reply | str]]:
        return [[self.reply(p, config, j) for j in range(config.n)] for p in prompts]

    def generate_tokens(self, prompts: list[list[int]],
                        config: SamplingConfig) -> list[list[Completion]]:
        texts = [self.tokenizer.decode(list(p), skip_special_tokens=False) for p in prompts]
        return self.generate(texts, config)

    def generate(self, prompts: list[str], config: SamplingConfig) -> list[list[Completion]]:
        from aimo3_recipe.data.renderers import encode_text

        out = self.replies(prompts, config)
        self.calls += 1
        result = []
        for group in out:
            comps = []
            for r in group:
                r = Reply(r) if isinstance(r, str) else r
                ids = encode_text(self.tokenizer, r.text)
                lps = None if r.logprob is None else [r.logprob] * len(ids)
                comps.append(Completion(r.text, ids, lps, r.finish_reason))
            result.append(comps)
        return result


class RandomAnswerEngine(TextEngine):
    """Answers drawn from the call's seed, like a sampler whose output depends on the batch and
    its seed: 70% boxed, 15% unboxed "The answer is a", 15% cut at max tokens. Judges a
    GenSelect prompt "1". `fail_on_call`: raise KeyboardInterrupt (a kill) at that call."""

    def __init__(self, tokenizer, fail_on_call: int | None = None) -> None:
        super().__init__(tokenizer)
        self.prompts_seen = 0
        self.fail_on_call = fail_on_call

    def replies(self, prompts: list[str], config: SamplingConfig) -> list[list[Reply | str]]:
        import random

        if self.fail_on_call is not None and self.calls + 1 >= self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        self.prompts_seen += len(prompts)
        rng = random.Random(config.seed)
        out: list[list[Reply | str]] = []
        for prompt in prompts:
            if "candidate solutions" in prompt:  # a GenSelect judge prompt
                out.append([Reply("Solution 1 is right.\nJudgment: 1", logprob=None)] * config.n)
                continue
            group: list[Reply | str] = []
            for _ in range(config.n):
                a, r = rng.randint(0, 3), rng.random()
                if r < 0.7:
                    text, finish = f"So the answer is \\boxed{{{a}}}.", "stop"
                elif r < 0.85:
                    text, finish = f"The answer is {a}", "stop"
                else:
                    text, finish = "We get \\boxed{", "length"
                group.append(Reply(text, finish, -rng.random()))
            out.append(group)
        return out


class ToolUsingEngine(TextEngine):
    """Writes a python block, then reads its output and boxes it (a tool-using model). On a
    problem "What is 0 ..." its block raises."""

    def reply(self, prompt: str, config: SamplingConfig, index: int) -> Reply | str:
        turn = prompt.rsplit("<|im_start|>assistant", 1)[-1]  # what the model wrote so far
        if "```output" in turn:
            result = turn.rsplit("```output", 1)[1].strip().strip("`").strip()
            return f"The tool says {result}, so \\boxed{{{result}}}."
        if "What is 0" in prompt:
            return "```python\nprint(1 / 0)\n```\n"
        n = prompt.split("What is ")[1].split(" ")[0]
        return f"Compute it.\n```python\nx = {n}\nprint(x + 0)\n```\n"


class FixedEngine(TextEngine):
    """Answers every prompt with the same text."""

    def __init__(self, tokenizer, text: str) -> None:
        super().__init__(tokenizer)
        self.text = text

    def reply(self, prompt: str, config: SamplingConfig, index: int) -> Reply | str:
        return Reply(self.text, logprob=None)


class ReplyEngine(TextEngine):
    """Completions from `reply_fn(prompt, sample_index, call_index) -> (text, logprob)`;
    `requested` records (prompts, n) of every call."""

    def __init__(self, tokenizer, reply_fn) -> None:
        super().__init__(tokenizer)
        self.reply_fn, self.requested = reply_fn, []

    def replies(self, prompts: list[str], config: SamplingConfig) -> list[list[Reply | str]]:
        self.requested.append((len(prompts), config.n))
        out: list[list[Reply | str]] = []
        for p in prompts:
            group: list[Reply | str] = []
            for j in range(config.n):
                text, lp = self.reply_fn(p, j, self.calls)
                group.append(Reply(text or " ", logprob=lp))
            out.append(group)
        return out


class KillAfter:
    """Wraps an engine; raises KeyboardInterrupt (a kill) at its `fail_on_call`-th call."""

    def __init__(self, engine, fail_on_call: int) -> None:
        self.engine, self.tokenizer = engine, engine.tokenizer
        self.calls, self.fail_on_call = 0, fail_on_call

    def _tick(self) -> None:
        self.calls += 1
        if self.calls >= self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")

    def generate(self, prompts, config):
        self._tick()
        return self.engine.generate(prompts, config)

    def generate_tokens(self, prompts, config):
        self._tick()
        return self.engine.generate_tokens(prompts, config)


class ScriptedTIREngine:
    """Plays back per-prompt model turns like a real engine would, with a `CharTokenizer`
    (one character = one token): stop strings and max_tokens honoured (unless told not to).
    Turn k is what the model writes after the k-th tool output; the text already generated
    in that turn must be its prefix. `calls` records (prompt texts, config) of every call.
    `max_model_len`: a context window enforced as vLLM does (a completion ends "length" where
    prompt + completion fill it; a prompt that fills it alone raises ValueError)."""

    TOOL_BLOCK = re.compile(r"```output\n.*?```\n", re.DOTALL)

    def __init__(self, scripts: dict[str, list[str]], honour_stops: bool = True,
                 drop_stop_str: bool = False, max_model_len: int | None = None) -> None:
        self.tokenizer = CharTokenizer()
        self.scripts, self.honour_stops, self.drop_stop_str = scripts, honour_stops, drop_stop_str
        self.max_model_len = max_model_len
        self.calls: list[tuple[list[str], SamplingConfig]] = []

    def _script_for(self, prompt: str) -> str:
        for key, turns in self.scripts.items():
            if prompt.startswith(key):
                transcript = prompt[len(key):]
                tools = list(self.TOOL_BLOCK.finditer(transcript))
                done = transcript[tools[-1].end():] if tools else transcript
                turn = turns[min(len(tools), len(turns) - 1)]
                assert turn.startswith(done), (turn, done)
                return turn[len(done):]
        raise KeyError(prompt)

    def _complete(self, prompt: str, config: SamplingConfig) -> Completion:
        rest = self._script_for(prompt)
        finish, stop_reason, text = "stop", None, rest
        max_tokens = config.max_tokens
        if self.max_model_len is not None:
            if len(prompt) >= self.max_model_len:  # vLLM's VLLMValidationError
                raise ValueError(f"The decoder prompt (length {len(prompt)}) plus the number of "
                                 f"requested output tokens (at least 1) is longer than the "
                                 f"maximum model length of {self.max_model_len}.")
            max_tokens = min(max_tokens, self.max_model_len - len(prompt))
        if self.honour_stops:
            hits = [(rest.find(s), s) for s in config.stop if s in rest]
            if hits:
                i, s = min(hits)
                text, stop_reason = rest[: i + len(s)], s
        if len(text) > max_tokens:
            text, finish, stop_reason = text[:max_tokens], "length", None
        ids = [ord(c) for c in text]
        if stop_reason and (self.drop_stop_str or not config.include_stop_str):
            text = text[: -len(stop_reason)]
            if self.drop_stop_str:  # an engine that leaves the stop string out of its ids too
                ids = ids[: -len(stop_reason)]
        return Completion(text, ids, [-0.5] * len(ids), finish, stop_reason)

    def generate_tokens(self, prompts, config):
        texts = [self.tokenizer.decode(p) for p in prompts]
        self.calls.append((texts, config))
        return [[self._complete(t, config)] * config.n for t in texts]

    def generate(self, prompts, config):
        return self.generate_tokens([self.tokenizer.encode(p) for p in prompts], config)


def _decode_step(pending: dict[str, list]) -> list[tuple[str, Completion]]:
    """One decode step of a scripted streaming engine: `pending` maps request id to
    [completion, steps left]; the requests whose last step this was end (and are removed)."""
    ended = []
    for rid, entry in list(pending.items()):
        entry[1] -= 1
        if entry[1] <= 0:
            ended.append((rid, entry[0]))
            del pending[rid]
    return ended


class StreamingScriptedTIREngine(ScriptedTIREngine):
    """The same scripts through `submit`/`poll` (a `StreamingEngine`, like vLLM): each poll
    decodes one token of every pending request, so a short request ends while long ones go on.
    `submits` records (poll step, request id, config) of every request."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pending: dict[str, list] = {}
        self.steps = 0
        self.submits: list[tuple[int, str, SamplingConfig]] = []
        self.cancelled: list[str] = []

    def submit(self, request_id, prompt_ids, config) -> None:
        assert request_id not in self.pending
        text = self.tokenizer.decode(prompt_ids)
        self.calls.append(([text], config))
        comp = self._complete(text, config)
        self.pending[request_id] = [comp, max(1, len(comp.token_ids))]
        self.submits.append((self.steps, request_id, config))

    def poll(self):
        import time

        time.sleep(0.002)  # a decode step takes time: code running meanwhile can finish
        self.steps += 1
        return _decode_step(self.pending)

    def has_pending(self) -> bool:
        return bool(self.pending)

    def cancel_pending(self) -> None:
        self.cancelled = sorted(self.pending)
        self.pending.clear()


class ClockedScriptEngine:
    """A `StreamingEngine` on a simulated clock (the competition solver's scheduling tests).
    `plans[key][i]` is a list of turns (text, steps) for attempt i of the problem whose
    text contains `key`: turn k is what it writes after its k-th tool output, returned
    `steps` decode steps after it was submitted. Each `poll` is one decode step and
    advances `clock` (a `SimClock`) by `step_s`; with `top_logprobs` every token gets the
    top-2 log-probs (-0.1, -2.5). `cancelled` lists the requests aborted by cancel_pending."""

    def __init__(self, clock: Any, plans: dict[str, list[list[tuple[str, int]]]],
                 step_s: float = 1.0, real_sleep_s: float = 0.0) -> None:
        self.tokenizer = CharTokenizer()
        self.clock, self.plans, self.step_s = clock, plans, step_s
        self.real_sleep_s = real_sleep_s  # real seconds per step (only where cells must run)
        self.pending: dict[str, list] = {}
        self.cancelled: list[str] = []
        self.submitted: list[str] = []
        self.polls = 0

    def _plan(self, prompt: str, i: int) -> tuple[str, int]:
        for key, attempts in self.plans.items():
            if key in prompt:
                turns = attempts[i]
                done = prompt.split(key, 1)[1].count("```output")  # tool outputs so far
                return turns[min(done, len(turns) - 1)]
        raise KeyError(prompt[-80:])

    def submit(self, request_id, prompt_ids, config) -> None:
        prompt = self.tokenizer.decode(prompt_ids)
        text, steps = self._plan(prompt, int(request_id.rsplit("-", 1)[1]))
        text = text[: config.max_tokens]
        ids = [ord(c) for c in text]
        top = [[-0.1, -2.5]] * len(ids) if config.top_logprobs else None
        stop = next((s for s in config.stop if text.endswith(s)), None)
        comp = Completion(text, ids, [-0.1] * len(ids), "stop", stop, top_logprobs=top)
        self.pending[request_id] = [comp, max(1, steps)]
        self.submitted.append(request_id)

    def poll(self):
        self.polls += 1
        self.clock.advance(self.step_s)
        if self.real_sleep_s:
            import time

            time.sleep(self.real_sleep_s)
        return _decode_step(self.pending)

    def has_pending(self) -> bool:
        return bool(self.pending)

    def cancel_pending(self) -> None:
        self.cancelled.extend(sorted(self.pending))
        self.pending.clear()

    def generate_tokens(self, prompts, config):  # a StreamingEngine is also an Engine
        raise AssertionError("the solver streams; generate_tokens is not used")

    def generate(self, prompts, config):
        raise AssertionError("the solver streams; generate is not used")
