"""Held-out problems for measuring what training taught: the same school-level skills as the
offline generator (synthetic.py), in phrasings that generator never uses.

Why: a model trained on the generator's templates can score well on those templates by
pattern matching and still fail the same arithmetic phrased another way ("Divide 60 by 10"
sent down the remainder template). These problems use other sentence shapes and word
orders, other names, objects and units, numbers written in words, and story framings, so
accuracy on them says whether a skill was learnt. tests/test_heldout.py checks that no
held-out problem shares its wording with the generator's (word 5-grams, numbers masked).

Every answer is an integer, computed exactly. Deterministic: item i comes from its own RNG
seeded by (seed, i). Limits: a few templates per kind; it tests transfer across phrasing,
not harder mathematics.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from aimo3_recipe.data.records import MathRecord

SOURCE = "heldout"
_NAMES = ["Ines", "Kofi", "Mei", "Dmitri", "Amara", "Lukas", "Zainab", "Hiro", "Sofia", "Tariq"]
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve"]


def _arithmetic(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(12, 99), r.randint(3, 40), r.randint(2, 9)
    name = r.choice(_NAMES)
    forms = [
        ((f"{name} had {a} stickers, gave away {b} of them and then bought {c} more. "
         f"How many stickers does {name} have now?"), a - b + c),
        ((f"Take the number {a}, add {b} to it, then multiply the total by {c}. "
         "What number do you end up with?"), (a + b) * c),
        (f"A crate holds {c} rows of {b} bottles. How many bottles fill {a % 5 + 2} crates?",
         c * b * (a % 5 + 2)),
        (f"Multiply {c} by {a}, then take away {b}. What remains?", c * a - b),
        (f"The sum of {a}, {b} and {c}, minus {c * 2}, equals what?", a + b + c - 2 * c),
    ]
    return r.choice(forms)


def _division(r: random.Random) -> tuple[str, int]:
    q, d = r.randint(3, 30), r.randint(2, 12)
    n = q * d
    name = r.choice(_NAMES)
    forms = [
        ((f"{n} sweets are shared equally among {d} children. How many sweets does each "
         "child get?"), q),
        ((f"{name} cuts a ribbon {n} cm long into pieces of {d} cm each. How many pieces "
         "are there?"), q),
        (f"What number, multiplied by {d}, gives {n}?", q),
    ]
    return r.choice(forms)


def _linear(r: random.Random) -> tuple[str, int]:
    x, a, b = r.randint(-9, 15), r.randint(2, 9), r.randint(1, 30)
    forms = [
        (f"Five times a number, increased by {b}, is {5 * x + b}. What is the number?", x),
        ((f"I think of a number, multiply it by {a} and subtract {b}; the result is "
         f"{a * x - b}. Which number did I think of?"), x),
        (f"For which value of n does {a}n + {b} equal {a * x + b}?", x),
        (f"The number y satisfies {b} + {a}y = {b + a * x}. Give y.", x),
    ]
    return r.choice(forms)


def _modular(r: random.Random) -> tuple[str, int]:
    m, a = r.randint(3, 13), r.randint(20, 500)
    k, base = r.randint(3, 9), r.randint(2, 7)
    name = r.choice(_NAMES)
    forms = [
        ((f"{name} packs {a} eggs into boxes of {m}. How many eggs are left over once every "
         "full box is packed?"), a % m),
        (f"After dividing {a} by {m}, what is left over?", a % m),
        (f"Raise {base} to the power {k}. What remainder is left after division by {m}?",
         pow(base, k, m)),
        ((f"Today is the first day of a {m}-day cycle. Counting today as day 0, which day of "
         f"the cycle (0 to {m - 1}) is it after {a} days?"), a % m),
    ]
    return r.choice(forms)


def _gcd_lcm(r: random.Random) -> tuple[str, int]:
    g = r.randint(2, 12)
    a, b = g * r.randint(2, 9), g * r.randint(2, 9)
    while a == b:
        b = g * r.randint(2, 9)
    forms = [
        (f"Find the greatest common factor of {a} and {b}.", math.gcd(a, b)),
        ((f"Two lamps flash every {a} and every {b} seconds, and they just flashed together. "
         "After how many seconds will they next flash together?"), math.lcm(a, b)),
        ((f"{a} red and {b} blue beads are split into identical bags with nothing left over. "
         "At most how many bags can there be?"), math.gcd(a, b)),
        (f"Which is the smallest number that both {a} and {b} divide evenly?", math.lcm(a, b)),
    ]
    return r.choice(forms)


def _counting(r: random.Random) -> tuple[str, int]:
    n, k = r.randint(4, 9), r.randint(2, 3)
    s, m = r.randint(2, 6), r.randint(2, 7)
    forms = [
        ((f"A club of {n} people picks a team of {k}. How many different teams are "
         "possible?"), math.comb(n, k)),
        ((f"A cafe offers {s} soups and {m} main dishes. How many dinners of one soup and one "
         "main dish can be ordered?"), s * m),
        ((f"{n} runners finish a race with no ties. In how many orders can the gold and "
         "silver medals go?"), n * (n - 1)),
        ((f"In a row on a shelf, {_WORDS[min(n, 7)]} different cups can be lined up in how "
         "many orders?"),
         math.factorial(min(n, 7))),
    ]
    return r.choice(forms)


def _word(r: random.Random) -> tuple[str, int]:
    speed, hours = r.randint(3, 25), r.randint(2, 8)
    price, count = r.randint(2, 15), r.randint(3, 12)
    name = r.choice(_NAMES)
    forms = [
        ((f"{name} cycles for {hours} hours at a steady {speed} miles an hour. How far, in "
         f"miles, does {name} ride?"), speed * hours),
        ((f"Pens cost {price} dollars each. {name} buys {count} pens and pays with a "
         f"{price * count + 50}-dollar note. How much change comes back, in dollars?"), 50),
        ((f"A tank holds {speed * hours} litres and drains at {speed} litres a minute. How "
         "many minutes until it is empty?"), hours),
        ((f"{name} reads {count} pages each evening. How many pages does {name} read in "
         f"{_WORDS[min(hours, 12)]} evenings?"), count * hours),
    ]
    return r.choice(forms)


GENERATORS: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "arithmetic": _arithmetic, "division": _division, "linear_equation": _linear,
    "modular": _modular, "gcd_lcm": _gcd_lcm, "counting": _counting, "word_problem": _word,
}


def held_out_problems(n: int, seed: int = 0) -> list[MathRecord]:
    """`n` distinct held-out problems (kinds drawn uniformly), integer answers."""
    return draw_distinct(GENERATORS, n, key=f"aimo3-heldout:{seed}", source=SOURCE,
                         id_prefix=f"heldout-{seed}", spread_kinds=n >= len(GENERATORS))


def draw_distinct(generators: dict[str, Callable[[random.Random], tuple[str, int]]], n: int, *,
                  key: str, source: str, id_prefix: str, spread_kinds: bool = True,
                  seen: set[str] | None = None, metadata: dict | None = None) -> list[MathRecord]:
    """`n` distinct problems from `generators`, item i drawn from `Random(f"{key}:{i}")` (so a
    set is the same on every machine). `spread_kinds`: kinds in turn, else drawn at random;
    problems in `seen` are skipped (a locked part that must never repeat a tuning problem)."""
    seen = set() if seen is None else seen
    out: list[MathRecord] = []
    kinds = list(generators)
    i = 0
    while len(out) < n and i < 50 * n + 100:
        rng = random.Random(f"{key}:{i}")
        kind = kinds[i % len(kinds)] if spread_kinds else rng.choice(kinds)
        problem, answer = generators[kind](rng)
        i += 1
        if problem in seen:
            continue
        seen.add(problem)
        out.append(MathRecord(problem=problem, solution="", answer=str(answer), source=source,
                              metadata={"id": f"{id_prefix}-{len(out)}", "kind": kind,
                                        "subject": kind, **(metadata or {})}))
    return out
