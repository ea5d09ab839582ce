"""The README's first command: the inference stack on the embedded default model, offline.

Loads SmolLM2-135M-Instruct (converted from its GGUF once), renders a few generated problems
with the CoT prompt, answers each greedily and by majority of 4 samples through
`MathGenerator`, and grades the answers with our verifier. The untrained 135M model is weak at
maths (a few percent): training it is what the rest of the toolkit is for.
`python -m aimo3_recipe.demo [--question "..."] [--problems N]`.
"""

from __future__ import annotations

import argparse
import sys
import time


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aimo3_recipe.demo")
    parser.add_argument("--model", default="default", help="model to load (default: embedded)")
    parser.add_argument("--question", default="What is 12 + 35?",
                        help="a question answered first, greedily")
    parser.add_argument("--problems", type=int, default=3, help="generated problems to grade")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args(argv)

    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.grader import verify_answer
    from aimo3_recipe.inference.generate import GenerationConfig, MathGenerator

    t0 = time.time()
    # transformers: for a few short answers vLLM's start-up (~1 min on CPU) would dominate
    greedy = MathGenerator(GenerationConfig(model_name_or_path=args.model, strategy="greedy",
                                            max_new_tokens=args.max_new_tokens, device="cpu",
                                            use_vllm=False))
    print(f"[demo] loaded {args.model} in {time.time() - t0:.1f}s")
    result = greedy.solve(args.question)
    print(f"[demo] Q: {args.question}\n[demo] model: {result.candidates[0].text.strip()}\n"
          f"[demo] extracted answer: {result.answer}  ({result.time_s:.1f}s)")

    voting = MathGenerator(GenerationConfig(model_name_or_path=args.model,
                                            strategy="majority_vote", num_samples=4,
                                            max_new_tokens=args.max_new_tokens, device="cpu"),
                           engine=greedy.engine)
    records = generate_synthetic(args.problems, seed=2026, difficulty=1)
    correct = {"greedy": 0, "majority@4": 0}
    for rec in records:
        g, m = greedy.solve(rec.problem), voting.solve(rec.problem)
        ok_g, ok_m = verify_answer(g.answer, rec.answer), verify_answer(m.answer, rec.answer)
        correct["greedy"] += ok_g
        correct["majority@4"] += ok_m
        print(f"[demo] {rec.problem}\n       reference {rec.answer} | greedy {g.answer} "
              f"({'ok' if ok_g else 'wrong'}) | majority@4 {m.answer} ({'ok' if ok_m else 'wrong'}, "
              f"votes {dict(m.votes)})")
    n = len(records)
    print(f"[demo] accuracy on {n} generated problems: greedy {correct['greedy']}/{n}, "
          f"majority@4 {correct['majority@4']}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
