"""Held-out problems: exact answers, and wording the offline generator never uses."""

from __future__ import annotations

import re

from aimo3_recipe.data.heldout import held_out_problems
from aimo3_recipe.data.synthetic import generate_synthetic


def _grams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.sub(r"-?\d+", "#", text.lower()).replace("$", " ").split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_deterministic_distinct_and_integer():
    a, b = held_out_problems(140, seed=1), held_out_problems(140, seed=1)
    assert [r.problem for r in a] == [r.problem for r in b]
    assert len({r.problem for r in a}) == 140
    assert all(re.fullmatch(r"-?\d+", r.answer) for r in a)
    assert len({r.metadata["kind"] for r in a}) == 7


def test_phrasing_is_not_the_generators():
    train = set().union(*(_grams(r.problem) for r in generate_synthetic(3000, seed=0)))
    held = held_out_problems(300, seed=0)
    shared = [r.problem for r in held if _grams(r.problem) & train]
    assert len(shared) <= 0.05 * len(held), shared[:5]


def test_answers_recomputed_from_the_statement():
    """For one template of each of four kinds, read the numbers back out of the text and
    recompute the answer independently."""
    import math

    rules = [
        (r"(\d+) sweets are shared equally among (\d+) children", lambda a, b: a // b),
        (r"After dividing (\d+) by (\d+), what is left over", lambda a, b: a % b),
        (r"greatest common factor of (\d+) and (\d+)", math.gcd),
        (r"offers (\d+) soups and (\d+) main dishes", lambda a, b: a * b),
    ]
    checked = {pattern: 0 for pattern, _ in rules}
    for r in held_out_problems(400, seed=3):
        for pattern, f in rules:
            m = re.search(pattern, r.problem)
            if m:
                assert int(r.answer) == f(int(m.group(1)), int(m.group(2))), r.problem
                checked[pattern] += 1
    assert all(n > 0 for n in checked.values()), checked
