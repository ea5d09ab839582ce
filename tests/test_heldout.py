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


def test_story_parts_are_disjoint_deterministic_and_exact():
    from aimo3_recipe.data.heldout_stories import held_out_stories

    tuning, locked = held_out_stories(120, seed=0), held_out_stories(120, seed=0, part="locked")
    assert [r.problem for r in tuning] == [r.problem for r in held_out_stories(120, seed=0)]
    assert len({r.problem for r in tuning}) == 120 and len({r.problem for r in locked}) == 120
    assert not {r.problem for r in tuning} & {r.problem for r in locked}
    assert {r.metadata["part"] for r in locked} == {"locked"}
    assert all(re.fullmatch(r"\d+", r.answer) for r in tuning + locked)  # whole, non-negative
    for r in tuning + locked:  # two templates recomputed from the text
        m = re.search(r"(\d+) consecutive whole numbers start at (\d+)", r.problem)
        if m:
            k, x = int(m.group(1)), int(m.group(2))
            assert int(r.answer) == sum(range(x, x + k)), r.problem
        m = re.search(r"tagged at (\d+) francs is marked down by (\d+) percent", r.problem)
        if m:
            assert int(r.answer) == int(m.group(1)) * (100 - int(m.group(2))) // 100, r.problem
    import pytest
    with pytest.raises(ValueError, match="part must be"):
        held_out_stories(3, part="secret")


def test_story_phrasing_is_not_the_generators():
    """The generator's stories (and every other kind) share no 5-gram with held-out stories,
    in either direction of reuse: not with the tuning part, not with the locked part."""
    from aimo3_recipe.data.heldout_stories import held_out_stories

    train = set().union(*(_grams(r.problem) for r in generate_synthetic(4000, seed=0)))
    assert sum(r.metadata["kind"] == "story" for r in generate_synthetic(400, seed=0)) > 20
    held = held_out_stories(200, seed=0) + held_out_stories(200, seed=0, part="locked")
    shared = [r.problem for r in held if _grams(r.problem) & train]
    assert not shared, shared[:5]
