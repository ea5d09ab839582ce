"""Story problems for the offline generator: the two-step stories of kind "story" (`story`),
and the original fixed-phrasing word problems of kind "word_problem" (`word_problem`).

Why: a model trained on a few fixed sentences learns the sentences, not the situation (issue
25: 90% on direct computations, 4% on story problems phrased another way). So each skill here
is told many ways: people and pronouns, objects and units, numbers as digits or words, the
question before or after the facts, and sometimes a number that does not matter. Skills:
prices and quantities, ages, rates with a change of unit, leftovers, areas, discounts,
averages; each needs two steps.

Every answer is an integer, computed exactly, and every `code` prints exactly `answer`.
The held-out stories (heldout_stories.py) use other wording; tests/test_heldout.py checks
that they share no word 5-gram with what this module writes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

PEOPLE = [("Maya", "she"), ("Liam", "he"), ("Aisha", "she"), ("Kenji", "he"), ("Sofia", "she"),
          ("Omar", "he"), ("Elena", "she"), ("Noah", "he"), ("Priya", "she"), ("Lucas", "he"),
          ("Fatima", "she"), ("Diego", "he"), ("Hannah", "she"), ("Ravi", "he"),
          ("Grace", "she"), ("Mateo", "he"), ("Yuki", "she"), ("Samuel", "he"),
          ("Leila", "she"), ("Tomas", "he"), ("Chloe", "she"), ("Arjun", "he"),
          ("Nadia", "she"), ("Felix", "he")]
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                 "seventeen", "eighteen", "nineteen", "twenty"]


@dataclass
class Story:
    """One story problem with its reasoning, code and answer (synthetic._Item's fields)."""

    problem: str  # the statement shown to the model
    steps: list[str]  # CoT lines before the conclusion
    answer: str  # the integer answer as text
    code: str  # Python that prints `answer`


class _Teller:
    """Per-item choices of surface form: number words, a distractor, question position."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = rng.random() < 0.3  # write small numbers as words in this item

    def num(self, n: int) -> str:
        return _NUMBER_WORDS[n] if self.words and 0 <= n <= 20 else str(n)

    def person(self, avoid: str = "") -> tuple[str, str]:
        return self.rng.choice([p for p in PEOPLE if p[0] != avoid])

    def distractor(self, name: str) -> str:
        """A sentence with a number that does not change the answer (or nothing)."""
        r = self.rng
        if r.random() < 0.6:
            return ""
        return r.choice([f" {name} has {r.randint(2, 9)} cousins.",
                         f" It is {r.randint(2, 11)} o'clock when {name} starts.",
                         f" The street has {r.randint(10, 60)} houses on it.",
                         f" {name}'s bag weighs {r.randint(2, 8)} kilograms."])

    def ask(self, facts: str, question: str, condition: str) -> str:
        """The facts then the question, or the question with its condition first."""
        if self.rng.random() < 0.3:
            return f"{question[:-1]}, given that {condition}? {facts}".strip()
        return f"{facts} {question}".strip()


def _prices(t: _Teller, d: int) -> Story:
    (name, pron), r = t.person(), t.rng
    item, unit = r.choice([("pencils", "a pack"), ("oranges", "a bag"), ("candles", "a box"),
                           ("markers", "a set"), ("rolls", "a tray")])
    packs, per, price = r.randint(2, 4 + 2 * d), r.randint(3, 12), r.randint(2, 6 * d)
    total = packs * per
    ans = total * price if r.random() < 0.5 else None
    if ans is not None:
        facts = (f"{name} buys {t.num(packs)} packs of {item}, each pack holding {t.num(per)}."
                 f"{t.distractor(name)} Every single one costs {price} cents.")
        q = f"How many cents does {name} spend?"
        steps = [f"{name} buys ${packs} \\times {per} = {total}$ {item}.",
                 f"They cost ${total} \\times {price} = {ans}$ cents."]
        code = f"count = {packs} * {per}\nprint(count * {price})"
        return Story(t.ask(facts, q, f"{name} buys {packs} packs of {per}"), steps, str(ans), code)
    pack_price = per * price
    facts = (f"{item.capitalize()} are sold at {pack_price} cents for {unit} of {t.num(per)}."
             f"{t.distractor(name)} {name} wants {t.num(total)} of them.")
    ans = packs * pack_price
    steps = [f"{name} needs ${total} \\div {per} = {packs}$ packs.",
             f"That is ${packs} \\times {pack_price} = {ans}$ cents."]
    code = f"packs = {total} // {per}\nprint(packs * {pack_price})"
    return Story(f"{facts} How much does {pron} pay, in cents?", steps, str(ans), code)


def _ages(t: _Teller, d: int) -> Story:
    (a, _), r = t.person(), t.rng
    b, _ = t.person(avoid=a)
    young, gap, years = r.randint(4, 15), r.randint(2, 10 * d), r.randint(2, 12)
    old = young + gap
    if r.random() < 0.5:
        ans = young + old + 2 * years
        facts = (f"{a} is {t.num(young)} and {b} is {t.num(gap)} years older than {a}."
                 f"{t.distractor(a)}")
        q = f"What will their ages add up to in {t.num(years)} years?"
        steps = [f"{b} is ${young} + {gap} = {old}$.",
                 f"In {years} years the sum is ${young} + {old} + 2 \\times {years} = {ans}$."]
        code = f"a = {young}\nb = a + {gap}\nprint(a + b + 2 * {years})"
        return Story(t.ask(facts, q, f"{a} is {young}"), steps, str(ans), code)
    facts = (f"In {t.num(years)} years {b} will be {old + years}."
             f" {a} is {t.num(gap)} years younger than {b} is now.{t.distractor(b)}")
    ans = old - gap
    steps = [f"{b} is now ${old + years} - {years} = {old}$.",
             f"{a} is ${old} - {gap} = {ans}$."]
    code = f"b_now = {old + years} - {years}\nprint(b_now - {gap})"
    return Story(f"{facts} How old is {a} today?", steps, str(ans), code)


def _rates(t: _Teller, d: int) -> Story:
    (name, pron), r = t.person(), t.rng
    kind = r.randint(0, 2)
    if kind == 0:  # per minute, asked per hour
        rate, hours = r.randint(2, 9), r.randint(1, 2 + d)
        ans = rate * 60 * hours
        facts = (f"A machine in {name}'s workshop fills {t.num(rate)} jars every minute."
                 f"{t.distractor(name)}")
        q = f"How many jars does it fill in {t.num(hours)} hours?"
        steps = [f"One hour is 60 minutes, so {hours} hours are ${60 * hours}$ minutes.",
                 f"Jars: ${rate} \\times {60 * hours} = {ans}$."]
        code = f"minutes = 60 * {hours}\nprint({rate} * minutes)"
        return Story(t.ask(facts, q, f"it fills {rate} jars per minute"), steps, str(ans), code)
    if kind == 1:  # metres per second over minutes
        speed, minutes = r.randint(2, 6), r.randint(2, 5 * d)
        ans = speed * 60 * minutes
        facts = f"{name} jogs at {t.num(speed)} metres per second.{t.distractor(name)}"
        q = f"How many metres does {pron} cover in {t.num(minutes)} minutes?"
        steps = [f"{minutes} minutes are ${minutes} \\times 60 = {60 * minutes}$ seconds.",
                 f"Distance: ${speed} \\times {60 * minutes} = {ans}$ metres."]
        code = f"seconds = {minutes} * 60\nprint({speed} * seconds)"
        return Story(t.ask(facts, q, f"{name} runs {speed} m/s"), steps, str(ans), code)
    per_hour, minutes = r.choice([6, 12, 30, 60, 120, 180]), r.choice([10, 20, 30, 40, 50])
    ans = per_hour * minutes // 60
    facts = f"A printer turns out {per_hour} pages per hour.{t.distractor(name)}"
    steps = [f"{minutes} minutes are ${minutes} / 60$ of an hour.",
             f"Pages: ${per_hour} \\times {minutes} / 60 = {ans}$."]
    code = f"print({per_hour} * {minutes} // 60)"
    return Story(f"{facts} How many pages come out in {t.num(minutes)} minutes?", steps,
                 str(ans), code)


def _leftovers(t: _Teller, d: int) -> Story:
    (name, pron), r = t.person(), t.rng
    item = r.choice(["cookies", "marbles", "cards", "shells", "buttons", "seeds"])
    start, gone, per = r.randint(30, 60 * d), 0, r.randint(3, 9)
    gone = r.randint(3, start // 3)
    left = start - gone
    ans = left % per
    facts = (f"{name} collected {start} {item} and lost {t.num(gone)} on the way home."
             f"{t.distractor(name)} {pron.capitalize()} puts the others in bags of "
             f"{t.num(per)}.")
    steps = [f"{name} keeps ${start} - {gone} = {left}$ {item}.",
             f"${left} = {per} \\times {left // per} + {ans}$, so {ans} are not in a full bag."]
    code = f"left = {start} - {gone}\nprint(left % {per})"
    q = f"How many {item} are not in a full bag?"
    return Story(t.ask(facts, q, f"{name} had {start} {item}"), steps, str(ans), code)


def _areas(t: _Teller, d: int) -> Story:
    (name, _), r = t.person(), t.rng
    w, h = r.randint(3, 6 + 3 * d), r.randint(3, 6 + 3 * d)
    tile = r.choice([1, 2, 4]) if r.random() < 0.5 else 1
    unit = r.choice(["metres", "feet", "yards"])
    if tile > 1:
        w, h = w * 2, h * 2
        if tile == 4:
            w, h = w - w % 2, h - h % 2
        side = 2 if tile == 4 else 1
        ans = (w * h) // (side * side)
        facts = (f"{name} tiles a floor {t.num(w)} {unit} long and {t.num(h)} {unit} wide with "
                 f"square tiles {side} {unit} on a side.{t.distractor(name)}")
        steps = [f"The floor's area is ${w} \\times {h} = {w * h}$ square {unit}.",
                 f"Each tile covers ${side * side}$, so ${w * h} \\div {side * side} = {ans}$ "
                 "tiles."]
        code = f"area = {w} * {h}\nprint(area // ({side} * {side}))"
        return Story(f"{facts} How many tiles are needed?", steps, str(ans), code)
    cut = r.randint(2, min(w, h) - 1)
    ans = w * h - cut * cut
    facts = (f"A garden is {t.num(w)} {unit} by {t.num(h)} {unit}. A square pond {t.num(cut)} "
             f"{unit} on each side sits inside it.{t.distractor(name)}")
    steps = [f"Garden: ${w} \\times {h} = {w * h}$; pond: ${cut}^2 = {cut * cut}$.",
             f"Lawn left: ${w * h} - {cut * cut} = {ans}$ square {unit}."]
    code = f"print({w} * {h} - {cut} ** 2)"
    return Story(f"{facts} What area, in square {unit}, is not pond?", steps, str(ans), code)


def _discounts(t: _Teller, d: int) -> Story:
    (name, pron), r = t.person(), t.rng
    item = r.choice(["jacket", "lamp", "backpack", "board game", "kettle", "helmet"])
    pct = r.choice([10, 20, 25, 50]) if d < 3 else r.choice([15, 30, 35, 40])
    price = r.randint(2, 12) * (20 if pct in (15, 35) else 4) * 5
    off = price * pct // 100
    ans = price - off
    qty = r.randint(2, 4) if d > 1 else 1
    facts = (f"A {item} usually costs {price} dollars. This week it is {pct}% off."
             f"{t.distractor(name)}")
    steps = [f"The discount is ${pct}\\%$ of ${price}$, which is ${off}$ dollars.",
             f"The sale price is ${price} - {off} = {ans}$ dollars."]
    code = f"price = {price}\nsale = price - price * {pct} // 100\nprint(sale * {qty})"
    if qty > 1:
        steps.append(f"For {qty} of them: ${qty} \\times {ans} = {qty * ans}$ dollars.")
        ans *= qty
        q = f"How much does {name} pay for {t.num(qty)} of them?"
    else:
        q = f"How many dollars does {name} pay for it?"
    return Story(t.ask(facts, q, f"{pron} buys at the sale price"), steps, str(ans), code)


def _averages(t: _Teller, d: int) -> Story:
    (name, pron), r = t.person(), t.rng
    k, mean = r.randint(3, 3 + d), r.randint(50, 90)
    devs = [r.randint(-9, 9) for _ in range(k - 1)]
    scores = [mean + x for x in devs] + [mean - sum(devs)]  # they average exactly `mean`
    if not 0 <= scores[-1] <= 100:
        scores[-1] = mean
        scores[:-1] = [mean] * (k - 1)
    if r.random() < 0.5:
        facts = (f"{name}'s marks on {t.num(k)} quizzes were " + ", ".join(map(str, scores[:-1]))
                 + f" and {scores[-1]}.{t.distractor(name)}")
        steps = [f"The marks add up to ${mean * k}$.",
                 f"The mean mark is ${mean * k} \\div {k} = {mean}$."]
        code = f"marks = {scores}\nprint(sum(marks) // len(marks))"
        return Story(f"{facts} What is {pron} averaging?", steps, str(mean), code)
    done, last = scores[:-1], scores[-1]
    facts = (f"After {t.num(k - 1)} tests {name} has scores of " + ", ".join(map(str, done))
             + f".{t.distractor(name)}")
    q = (f"What must {pron} score on test number {t.num(k)} to average exactly {mean} over "
         f"all {t.num(k)}?")
    steps = [(f"An average of {mean} over {k} tests needs ${mean} \\times {k} = {mean * k}$ "
             "points."), (f"So far ${sum(done)}$, so {pron} needs ${mean * k} - {sum(done)} = "
             f"{last}$.")]
    code = f"scores = {done}\nprint({mean} * {k} - sum(scores))"
    return Story(f"{facts} {q}", steps, str(last), code)


_WORD_PEOPLE = PEOPLE[:10]  # word_problem's people (its output stays as it was)
_ITEMS = ["notebooks", "pens", "apples", "tickets", "muffins", "stickers", "comic books"]


def word_problem(rng: random.Random, d: int) -> Story:
    """The generator's original word problems (kind word_problem): shopping and change,
    distance, sharing, production and sales, ages; fixed phrasings, kept as they were."""
    (name, pron), (name2, _) = rng.sample(_WORD_PEOPLE, 2)
    scale = {1: 1, 2: 3, 3: 8}[d]
    kind = rng.randint(0, 4)
    if kind == 0:  # shopping and change
        item = rng.choice(_ITEMS)
        n, price = rng.randint(2, 6 * scale), rng.randint(2, 5 * scale)
        cost = n * price
        paid = (cost // 10 + 1 + rng.randint(0, 3)) * 10
        ans = paid - cost
        problem = rng.choice([
            (f"{name} buys {n} {item} at ${price} each and pays with ${paid}. How much change "
            f"does {pron} get, in dollars?"),
            (f"{item.capitalize()} cost ${price} each. {name} buys {n} of them and hands the "
            f"cashier ${paid}. How many dollars of change should {pron} receive?"),
            (f"How much change, in dollars, does {name} get from ${paid} after buying {n} "
            f"{item} that cost ${price} apiece?")])
        steps = [f"The {item} cost ${n} \\times {price} = {cost}$ dollars.",
                 f"The change is ${paid} - {cost} = {ans}$ dollars."]
        code = (f"items = {n}\nprice = {price}\npaid = {paid}\n"
                "change = paid - items * price\nprint(change)")
    elif kind == 1:  # distance
        s, t = rng.randint(3, 12) * 5, rng.randint(2, 2 + scale)
        s2, t2 = rng.randint(3, 12) * 5, rng.randint(1, 1 + scale)
        vehicle = rng.choice(["car", "train", "bus", "cyclist"])
        if d == 1:
            ans = s * t
            problem = rng.choice([(f"A {vehicle} travels at {s} km per hour for {t} hours. How "
                                  f"many kilometres does it cover?"),
                                  (f"How far, in km, does a {vehicle} going {s} km/h travel in "
                                  f"{t} hours?")])
            steps = [f"Distance is speed times time: ${s} \\times {t} = {ans}$ km."]
            code = f"speed = {s}\nhours = {t}\nprint(speed * hours)"
        else:
            ans = s * t + s2 * t2
            problem = rng.choice([
                (f"A {vehicle} travels at {s} km/h for {t} hours, then at {s2} km/h for {t2} "
                f"hours. How many kilometres does it travel in total?"),
                (f"For {t} hours a {vehicle} goes {s} km per hour; after that it goes {s2} km "
                f"per hour for {t2} hours. What total distance, in km, does it cover?")])
            steps = [f"First part: ${s} \\times {t} = {s * t}$ km.",
                     f"Second part: ${s2} \\times {t2} = {s2 * t2}$ km.",
                     f"Total: ${s * t} + {s2 * t2} = {ans}$ km."]
            code = (f"first = {s} * {t}\nsecond = {s2} * {t2}\nprint(first + second)")
    elif kind == 2:  # sharing equally
        k, each, keep = rng.randint(2, 6 + scale), rng.randint(2, 5 * scale), 0
        item = rng.choice(_ITEMS)
        if d > 1:
            keep = rng.randint(1, 10 * scale)
        total = k * each + keep
        ans = each
        keep_txt = f" keeps {keep} for {'herself' if pron == 'she' else 'himself'} and" \
            if keep else ""
        rest = "the rest" if keep else "them"
        problem = rng.choice([
            (f"{name} has {total} {item}. {pron.capitalize()}{keep_txt} shares {rest} equally "
            f"among {k} friends. How many {item} does each friend get?"),
            (f"{total} {item} belong to {name}, who{keep_txt} splits {rest} evenly between "
            f"{k} friends. How many does each friend receive?")])
        steps = ([f"After keeping {keep}, ${total} - {keep} = {total - keep}$ remain."]
                 if keep else [])
        steps.append(f"Each friend gets ${total - keep} \\div {k} = {ans}$.")
        code = f"total = {total}\nkept = {keep}\nfriends = {k}\nprint((total - kept) // friends)"
    elif kind == 3:  # eggs / production and sales
        lay, use, price = rng.randint(10, 20 * scale), rng.randint(1, 5), rng.randint(2, 4 * scale)
        lay = max(lay, use + 2)
        ans = (lay - use) * price
        problem = rng.choice([
            (f"{name}'s hens lay {lay} eggs a day. {pron.capitalize()} uses {use} of them and "
            f"sells the rest for ${price} each. How many dollars does {pron} make each day?"),
            (f"Every day a farm collects {lay} eggs, keeps {use}, and sells the others at "
            f"${price} per egg. What is the farm's daily income from eggs, in dollars?")])
        steps = [f"Eggs sold: ${lay} - {use} = {lay - use}$.",
                 f"Income: ${lay - use} \\times {price} = {ans}$ dollars."]
        code = f"laid = {lay}\nused = {use}\nprice = {price}\nprint((laid - used) * price)"
    else:  # ages
        age, times, later = rng.randint(3, 8 + scale), rng.randint(2, 4), rng.randint(2, 5 * scale)
        ans = age * times + later
        problem = rng.choice([
            (f"{name} is {age} years old. {name2} is {times} times as old as {name}. How old "
            f"will {name2} be in {later} years?"),
            (f"{name2}'s age is {times} times {name}'s age, and {name} is {age}. What will "
            f"{name2}'s age be {later} years from now?")])
        steps = [f"{name2} is now ${times} \\times {age} = {age * times}$ years old.",
                 f"In {later} years: ${age * times} + {later} = {ans}$."]
        code = f"age = {age}\nnow = {times} * age\nprint(now + {later})"
    return Story(problem, steps, str(ans), code)


SKILLS: dict[str, Callable[[_Teller, int], Story]] = {
    "prices": _prices, "ages": _ages, "rates": _rates, "leftovers": _leftovers,
    "areas": _areas, "discounts": _discounts, "averages": _averages,
}


def story(rng: random.Random, difficulty: int) -> Story:
    """One two-step story of a skill drawn uniformly (difficulty 1-3 scales the numbers)."""
    return SKILLS[rng.choice(list(SKILLS))](_Teller(rng), difficulty)
