"""Held-out two-step story problems: does training transfer to a situation told in words
the generator never uses?

Skills as in the generator's stories (stories.py) plus number puzzles: prices and
quantities, ages, rates with a change of unit, leftovers, areas, discounts, averages. Other
names, objects, units and sentence shapes; tests/test_heldout.py checks that no problem
shares a word 5-gram (numbers masked) with the generator's output.

Two parts, drawn from separate seed streams:
- "tuning": the part anyone may look at while choosing a preset's settings;
- "locked": the part a preset is never tuned on. The pipeline report gives it its own row,
  so a gain that exists only on problems someone looked at shows as such.
The same size serves both: 120 each (240 together) resolves a change of about 5 points only
when paired (see evaluation/paired.py); a single unpaired 120 gives a +-8 point interval.

Every answer is an integer, computed exactly. Deterministic per (part, seed, index).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from aimo3_recipe.data.heldout import draw_distinct
from aimo3_recipe.data.records import MathRecord

SOURCE = "heldout_stories"
PARTS = ("tuning", "locked")
_LOCK_GUARD = 400  # locked problems differ from the first this-many tuning problems
_NAMES = ["Rosa", "Bram", "Ingrid", "Kwame", "Thandi", "Oskar", "Lin", "Farid", "Marta",
          "Jonas", "Ayesha", "Pablo", "Greta", "Idris", "Wen", "Nikolai"]


def _shopping(r: random.Random) -> tuple[str, int]:
    who, crates, per, cost = r.choice(_NAMES), r.randint(2, 7), r.randint(4, 15), r.randint(2, 9)
    forms = [
        ((f"At the market {who} picks up {crates} crates with {per} melons in every crate. "
          f"A melon is priced at {cost} euros. What is the bill in euros?"), crates * per * cost),
        ((f"Stamps come in sheets of {per}. {who} needs {per * crates} stamps, and one sheet "
          f"sells for {cost} pounds. How many pounds will the stamps set {who} back?"),
         crates * cost),
    ]
    return r.choice(forms)


def _ages(r: random.Random) -> tuple[str, int]:
    a, b = r.sample(_NAMES, 2)
    kid, mult, ago = r.randint(3, 12), r.randint(2, 4), r.randint(1, 3)
    forms = [
        ((f"{a} turned {kid} this spring; {a}'s grandmother's age is {mult} times that. "
          f"How old was the grandmother {ago} years back?"), kid * mult - ago),
        ((f"Three years from today {b} turns {kid + 3}. {a} was born {ago + 1} years before "
          f"{b}. What is {a}'s age right now?"), kid + ago + 1),
    ]
    return r.choice(forms)


def _rates(r: random.Random) -> tuple[str, int]:
    who = r.choice(_NAMES)
    drip, hours, litres = r.randint(2, 9), r.randint(2, 5), r.randint(2, 6)
    forms = [
        ((f"A leaky tap loses {drip} millilitres each minute. Over {hours} whole hours, how "
          "many millilitres go to waste?"), drip * 60 * hours),
        ((f"{who} walks {litres} kilometres every hour. Expressed in metres, what distance "
          f"does {who} walk during {hours} hours?"), litres * 1000 * hours),
        ((f"A pump moves {litres * 60} litres of water per hour. What volume, in litres, does "
          f"it move in {drip} minutes?"), litres * drip),
    ]
    return r.choice(forms)


def _leftovers(r: random.Random) -> tuple[str, int]:
    who = r.choice(_NAMES)
    have, extra, size = r.randint(20, 90), r.randint(5, 30), r.randint(4, 12)
    forms = [
        ((f"{who} owns {have} postcards and a friend hands over {extra} more. {who} fills "
          f"albums that take exactly {size} postcards per page. Once no more complete pages "
          "can be made, how many postcards remain loose?"), (have + extra) % size),
        ((f"A baker made {have + extra} rolls and {extra} got burnt and were thrown out. The "
          f"good ones go into baskets of {size}. How many good rolls are left without a full "
          "basket?"), have % size),
    ]
    return r.choice(forms)


def _areas(r: random.Random) -> tuple[str, int]:
    who = r.choice(_NAMES)
    w, h, paint = r.randint(3, 12), r.randint(2, 8), r.randint(2, 5)
    forms = [
        ((f"A wall measures {w} m across and {h} m high. One tin of paint covers {paint} "
          f"square metres. {who} paints the wall twice over. How many square metres of "
          "painting is that?"), 2 * w * h),
        ((f"Two rugs lie on a floor: one is {w} ft by {h} ft and the other is a square with "
          f"{paint} ft sides. Together, how many square feet do they cover?"),
         w * h + paint * paint),
    ]
    return r.choice(forms)


def _discounts(r: random.Random) -> tuple[str, int]:
    who = r.choice(_NAMES)
    base, pct = r.randint(2, 20) * 10, r.choice([10, 20, 30, 40, 50])
    forms = [
        ((f"A bicycle tagged at {base} francs is marked down by {pct} percent in a sale. "
          f"What does {who} hand over for it, in francs?"), base - base * pct // 100),
        ((f"{who} has a voucher for {pct}% off a {base}-crown coat. How many crowns does the "
          "voucher save?"), base * pct // 100),
    ]
    return r.choice(forms)


def _averages(r: random.Random) -> tuple[str, int]:
    who = r.choice(_NAMES)
    days, mean = r.randint(3, 5), r.randint(10, 40)
    devs = [r.randint(-5, 5) for _ in range(days - 1)]
    temps = [mean + x for x in devs] + [mean - sum(devs)]
    forms = [
        ((f"On {days} successive days {who} counted birds at the feeder: "
          + "; ".join(map(str, temps)) + ". What was the typical (mean) count per day?"), mean),
        ((f"{who} must average {mean} laps per session over {days} sessions. The first "
          f"{days - 1} sessions gave " + " then ".join(map(str, temps[:-1])) + " laps. How many "
          "laps are needed in the final session?"), temps[-1]),
    ]
    return r.choice(forms)


def _puzzles(r: random.Random) -> tuple[str, int]:
    x, k, add = r.randint(3, 60), r.randint(2, 6), r.randint(1, 30)
    forms = [
        ((f"Double a secret number, then add {add}: you get {2 * x + add}. What is the "
          "secret number?"), x),
        ((f"Two numbers differ by {add} and add to {2 * x + add}. What is the larger of the "
          "two?"), x + add),
        ((f"If a number is tripled and then {add} is taken off, the outcome is {3 * x - add}. "
          "Find the number."), x),
        (f"{k} consecutive whole numbers start at {x}. What do they total?",
         k * x + k * (k - 1) // 2),
    ]
    return r.choice(forms)


GENERATORS: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "story_prices": _shopping, "story_ages": _ages, "story_rates": _rates,
    "story_leftovers": _leftovers, "story_areas": _areas, "story_discounts": _discounts,
    "story_averages": _averages, "story_puzzles": _puzzles,
}


def held_out_stories(n: int, seed: int = 0, *, part: str = "tuning") -> list[MathRecord]:
    """`n` distinct story problems of one part ("tuning" or "locked"), skills in turn."""
    if part not in PARTS:
        raise ValueError(f"held_out_stories: part must be one of {PARTS}; got {part!r}")
    # the locked part never repeats a tuning problem (of a tuning set up to this size)
    seen: set[str] = ({r.problem for r in held_out_stories(max(n, _LOCK_GUARD), seed)}
                      if part == "locked" else set())
    return draw_distinct(GENERATORS, n, key=f"aimo3-heldout-stories:{part}:{seed}",
                         source=SOURCE, id_prefix=f"story-{part}-{seed}", seen=seen,
                         metadata={"part": part})
