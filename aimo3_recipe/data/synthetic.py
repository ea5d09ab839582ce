"""Offline generator of verifiable maths problems with CoT and TIR solutions.

This is the embedded default dataset: it needs no hub, every answer is exact, and every
TIR solution's ```python block really runs and prints exactly what its ```output block says
(the tests execute all of them). Kinds: arithmetic, fractions, linear equations, modular
arithmetic, gcd/lcm, counting, word problems, two-step stories (stories.py); difficulty 1-3
scales the numbers and the number of steps. Each kind has several phrasings, because a model
trained on one phrasing sends an unseen one down the wrong template.

Determinism: item i is drawn from its own RNG seeded by (seed, i), so the first n items of
`generate_synthetic(n + m, seed)` are `generate_synthetic(n, seed)`. Limits: problems are
school level (a warm-up for the pipeline and a floor to rise from), not olympiad level.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.stories import Story, story, word_problem

SOURCE = "synthetic"


@dataclass
class _Item:
    """One generated problem before it is rendered into solutions."""

    problem: str
    steps: list[str]  # CoT reasoning lines, before the conclusion
    answer: str  # exact final answer (LaTeX for fractions)
    setup: str  # the TIR reasoning that leads to the code
    code: str  # Python that prints `printed`
    printed: str  # exactly what `code` prints (without the final newline)
    reading: str  # how the TIR solution reads the output


# ----------------------------------------------------------------------------- helpers

_CONCLUSIONS = ["Therefore, the answer is \\boxed{{{a}}}.", "So the answer is \\boxed{{{a}}}.",
                "The final answer is \\boxed{{{a}}}.", "Hence the answer is \\boxed{{{a}}}."]
_TIR_INTROS = ["Let me compute this with Python.", "I'll let Python do the arithmetic.",
               "A short Python check gives the exact value.", "Let's compute it in Python."]


def frac_tex(value: Fraction | int) -> str:
    """LaTeX of an exact rational: `5`, `\\frac{5}{6}`, `-\\frac{7}{3}`."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _ftex(num: int, den: int) -> str:
    return f"\\frac{{{num}}}{{{den}}}"


def _factor(n: int) -> dict[int, int]:
    out: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


def _factor_tex(n: int) -> str:
    parts = [f"{p}^{{{e}}}" if e > 1 else str(p) for p, e in sorted(_factor(n).items())]
    return " \\cdot ".join(parts) if parts else "1"


def _signed(value: int) -> str:
    """` + 5` / ` - 5` for writing a constant after a term."""
    return f" + {value}" if value >= 0 else f" - {-value}"


def _lin(coef: int, var: str) -> str:
    return {1: var, -1: f"-{var}"}.get(coef, f"{coef}{var}")


# ----------------------------------------------------------------------------- arithmetic

def _arithmetic(rng: random.Random, d: int) -> _Item:
    if d == 1:
        op = rng.choice("+-*/")
        if op == "/":
            b, q = rng.randint(2, 12), rng.randint(2, 12)
            a, ans = b * q, q
        else:
            a, b = rng.randint(2, 40), rng.randint(2, 40) if op != "*" else rng.randint(2, 12)
            if op == "-" and b > a:
                a, b = b, a
            ans = {"+": a + b, "-": a - b, "*": a * b}[op]
        sym = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}[op]
        words = {
            "+": [f"What is {a} plus {b}?", f"Find the sum of {a} and {b}.", f"Add {a} and {b}."],
            "-": [f"What is {a} minus {b}?", f"Subtract {b} from {a}.",
                  f"How much is {b} less than {a}?"],
            "*": [f"What is {a} times {b}?", f"Find the product of {a} and {b}.",
                  f"Multiply {a} by {b}."],
            "/": [f"What is {a} divided by {b}?", f"Divide {a} by {b}.",
                  f"How many times does {b} go into {a}?"],
        }[op]
        problem = rng.choice(words + [f"Compute ${a} {sym} {b}$.", f"Evaluate ${a} {sym} {b}$."])
        steps = [f"${a} {sym} {b} = {ans}$."]
        if op == "/":
            steps = [f"Since ${b} \\times {ans} = {a}$, we get ${a} \\div {b} = {ans}$."]
        pyop = "//" if op == "/" else op
        code = f"print({a} {pyop} {b})"
        return _Item(problem, steps, str(ans), rng.choice(_TIR_INTROS), code, str(ans),
                     f"The result is {ans}.")

    if d == 3 and rng.random() < 0.5:  # (a +- b) * c +- e
        a, b, c, e = (rng.randint(5, 60), rng.randint(2, 40), rng.randint(2, 15),
                      rng.randint(1, 99))
        op1, op2 = rng.choice("+-"), rng.choice("+-")
        inner = a + b if op1 == "+" else a - b
        prod = inner * c
        ans = prod + e if op2 == "+" else prod - e
        tex = f"({a} {op1} {b}) \\times {c} {op2} {e}"
        py = f"({a} {op1} {b}) * {c} {op2} {e}"
        steps = ["Parentheses come first.", f"${a} {op1} {b} = {inner}$.",
                 f"Then ${inner} \\times {c} = {prod}$.", f"Finally ${prod} {op2} {e} = {ans}$."]
    else:
        n_terms = 3 if d == 2 else rng.randint(4, 5)
        hi = 60 if d == 2 else 300
        nums = [rng.randint(2, hi)]
        ops = []
        for _ in range(n_terms - 1):
            op = rng.choice("+-*")
            ops.append(op)
            nums.append(rng.randint(2, 15) if op == "*" or (ops[-2:-1] == ["*"]) else
                        rng.randint(2, hi))
        tex_ops = {"+": "+", "-": "-", "*": "\\times"}
        tex = str(nums[0]) + "".join(f" {tex_ops[o]} {n}" for o, n in zip(ops, nums[1:]))
        py = str(nums[0]) + "".join(f" {o} {n}" for o, n in zip(ops, nums[1:]))
        # evaluate with precedence, recording the steps a person would write
        terms: list[tuple[str, int]] = []  # (sign, value) after products
        steps = []
        cur, sign = nums[0], "+"
        for o, n in zip(ops, nums[1:]):
            if o == "*":
                steps.append(f"${cur} \\times {n} = {cur * n}$.")
                cur *= n
            else:
                terms.append((sign, cur))
                cur, sign = n, o
        terms.append((sign, cur))
        if len(steps) and len(terms) > 1:
            steps.insert(0, "Multiplication comes before addition and subtraction.")
        total = terms[0][1]
        for s, v in terms[1:]:
            new = total + v if s == "+" else total - v
            steps.append(f"${total} {s} {v} = {new}$.")
            total = new
        ans = total
        if not steps:
            steps = [f"${tex} = {ans}$."]
    problem = rng.choice([f"Compute ${tex}$.", f"What is the value of ${tex}$?",
                          f"Evaluate ${tex}$.", "Calculate " + py.replace("*", "x") + ".",
                          f"Find ${tex}$."])
    return _Item(problem, steps, str(ans), rng.choice(_TIR_INTROS), f"print({py})", str(ans),
                 f"The expression equals {ans}.")


# ----------------------------------------------------------------------------- fractions

def _fractions(rng: random.Random, d: int) -> _Item:
    def frac(max_den: int) -> Fraction:
        den = rng.randint(2, max_den)
        num = rng.randint(1, den - 1) if d < 3 else rng.randint(1, 2 * den)
        return Fraction(num, den)

    max_den = {1: 6, 2: 12, 3: 15}[d]
    x, y = frac(max_den), frac(max_den)
    while y == x:
        y = frac(max_den)
    op = {1: "+", 2: rng.choice("+-"), 3: rng.choice("+-*/")}[d]
    xt, yt = _ftex(x.numerator, x.denominator), _ftex(y.numerator, y.denominator)
    ans = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
    ans_tex = frac_tex(ans)
    lowest = rng.choice([" Express your answer as a common fraction in lowest terms.",
                         " Give your answer in simplest form.", ""])
    if op in "+-":
        lcd = math.lcm(x.denominator, y.denominator)
        xn, yn = x.numerator * lcd // x.denominator, y.numerator * lcd // y.denominator
        raw = xn + yn if op == "+" else xn - yn
        steps = [(f"The least common denominator of {x.denominator} and {y.denominator} "
                 f"is {lcd}."),
                 f"${xt} = {_ftex(xn, lcd)}$ and ${yt} = {_ftex(yn, lcd)}$.",
                 f"${_ftex(xn, lcd)} {op} {_ftex(yn, lcd)} = {_ftex(raw, lcd)}$."]
        if math.gcd(raw, lcd) != 1:
            steps.append(f"In lowest terms this is ${ans_tex}$.")
        word = "sum" if op == "+" else "difference"
        phr = [f"Compute ${xt} {op} {yt}$.", f"Simplify ${xt} {op} {yt}$.",
               f"What is {x} {'plus' if op == '+' else 'minus'} {y}?"]
        phr.append(f"Find the sum of ${xt}$ and ${yt}$." if op == "+"
                   else f"Subtract ${yt}$ from ${xt}$.")
        phr.append(f"What is the {word} ${xt} {op} {yt}$?")
    elif op == "*":
        num, den = x.numerator * y.numerator, x.denominator * y.denominator
        steps = [(f"Multiply numerators and denominators: ${xt} \\times {yt} = "
                 f"{_ftex(num, den)}$.")]
        if math.gcd(num, den) != 1:
            steps.append(f"In lowest terms this is ${ans_tex}$.")
        phr = [f"Compute ${xt} \\times {yt}$.", f"What is ${xt}$ of ${yt}$?",
               f"Multiply ${xt}$ by ${yt}$.", f"Find the product of {x} and {y}."]
    else:
        steps = [(f"Dividing by ${yt}$ is multiplying by "
                 f"${_ftex(y.denominator, y.numerator)}$."),
                 (f"${xt} \\times {_ftex(y.denominator, y.numerator)} = "
                 f"{_ftex(x.numerator * y.denominator, x.denominator * y.numerator)}$."),
                 f"In lowest terms this is ${ans_tex}$."]
        phr = [f"Compute ${xt} \\div {yt}$.", f"Divide ${xt}$ by ${yt}$.",
               f"What is {x} divided by {y}?"]
    pyop = {"+": "+", "-": "-", "*": "*", "/": "/"}[op]
    code = ("from fractions import Fraction\n"
            f"result = Fraction({x.numerator}, {x.denominator}) {pyop} "
            f"Fraction({y.numerator}, {y.denominator})\nprint(result)")
    return _Item(rng.choice(phr) + lowest, steps, ans_tex,
                 "Exact fractions avoid rounding, so I'll use Python's Fraction.", code,
                 str(ans), f"The output {ans} is ${ans_tex}$.")


# ----------------------------------------------------------------------------- equations

def _linear_equation(rng: random.Random, d: int) -> _Item:
    v = rng.choice("xxxyntk")
    if d == 1:
        a, sol, b = rng.randint(2, 9), rng.randint(1, 12), rng.randint(1, 30)
        c = a * sol + b
        eq, py = f"{a}{v} + {b} = {c}", f"Eq({a}*{v} + {b}, {c})"
        steps = [f"Subtract {b} from both sides: ${a}{v} = {c - b}$.",
                 f"Divide both sides by {a}: ${v} = {sol}$."]
        ans = Fraction(sol)
    elif d == 2:
        a, c = rng.sample(range(-9, 10), 2)
        while a == c or a == 0 or c == 0:
            a, c = rng.sample(range(-9, 10), 2)
        sol, b = rng.randint(-12, 12), rng.randint(-30, 30)
        dd = (a - c) * sol + b
        eq = f"{_lin(a, v)}{_signed(b)} = {_lin(c, v)}{_signed(dd)}"
        py = f"Eq({a}*{v}{_signed(b)}, {c}*{v}{_signed(dd)})"
        steps = [f"Move the {v} terms to the left: ${_lin(a - c, v)}{_signed(b)} = {dd}$.",
                 f"Move the constant to the right: ${_lin(a - c, v)} = {dd - b}$.",
                 f"Divide by {a - c}: ${v} = {sol}$."]
        ans = Fraction(sol)
    else:
        a, b, c = rng.randint(2, 9), rng.randint(-9, 9) or 1, rng.randint(1, 9)
        while c == a:
            c = rng.randint(1, 9)
        dd = rng.randint(-40, 40)
        # a(v + b) = c v + dd  ->  (a - c) v = dd - a b
        ans = Fraction(dd - a * b, a - c)
        eq = f"{a}({v}{_signed(b)}) = {_lin(c, v)}{_signed(dd)}"
        py = f"Eq({a}*({v}{_signed(b)}), {c}*{v}{_signed(dd)})"
        steps = [f"Expand the left side: ${a}{v}{_signed(a * b)} = {_lin(c, v)}{_signed(dd)}$.",
                 f"Collect terms: ${_lin(a - c, v)} = {dd - a * b}$.",
                 f"Divide by {a - c}: ${v} = {frac_tex(ans)}$."]
    problem = rng.choice([f"Solve for ${v}$: ${eq}$.", f"Find ${v}$ if ${eq}$.",
                          f"What value of ${v}$ satisfies ${eq}$?",
                          f"If ${eq}$, what is ${v}$?", f"Solve the equation ${eq}$."])
    code = (f"from sympy import symbols, Eq, solve\n{v} = symbols('{v}')\n"
            f"print(solve({py}, {v}))")
    printed = f"[{ans}]"
    return _Item(problem, steps, frac_tex(ans), "Let me solve the equation with sympy.", code,
                 printed, f"So ${v} = {frac_tex(ans)}$.")


# ----------------------------------------------------------------------------- modular

_PRIMES = [5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43]


def _modular(rng: random.Random, d: int) -> _Item:
    if d == 1:
        m = rng.randint(3, 20)
        a = rng.randint(m + 1, 999)
        q, r = divmod(a, m)
        problem = rng.choice([f"What is the remainder when {a} is divided by {m}?",
                              f"Find ${a} \\bmod {m}$.",
                              f"Compute the remainder of {a} upon division by {m}.",
                              f"What is ${a}$ modulo ${m}$?",
                              f"What remainder does {a} leave when divided by {m}?"])
        steps = [f"${a} = {m} \\times {q} + {r}$ with $0 \\le {r} < {m}$."]
        code, ans = f"print({a} % {m})", r
    else:
        m = rng.choice(_PRIMES[:6] if d == 2 else _PRIMES)
        a = rng.randint(2, 12 if d == 2 else 50)
        while a % m == 0:
            a = rng.randint(2, 12 if d == 2 else 50)
        k = rng.randint(5, 12) if d == 2 else rng.randint(50, 2025)
        ans = pow(a, k, m)
        problem = rng.choice([f"What is the remainder when ${a}^{{{k}}}$ is divided by {m}?",
                              f"Find ${a}^{{{k}}} \\bmod {m}$.",
                              f"Compute ${a}^{{{k}}}$ modulo {m}.",
                              f"What remainder does ${a}^{{{k}}}$ leave on division by {m}?"])
        if d == 2:
            steps, p = [], 1
            for i in range(1, k + 1):
                p = p * a % m
                steps.append(f"${a}^{{{i}}} \\equiv {p} \\pmod{{{m}}}$.")
            steps = [f"Multiply step by step, reducing modulo {m} each time."] + steps
        else:
            order, p = 1, a % m
            while p != 1:
                p, order = p * a % m, order + 1
            e = k % order
            steps = [(f"Since {m} is prime and does not divide {a}, the powers of {a} "
                     f"repeat modulo {m}."),
                     f"The smallest $n$ with ${a}^n \\equiv 1 \\pmod{{{m}}}$ is $n = {order}$.",
                     (f"${k} = {order} \\times {k // order} + {e}$, so "
                     f"${a}^{{{k}}} \\equiv {a}^{{{e}}} \\equiv {ans} \\pmod{{{m}}}$.")]
        code = f"print(pow({a}, {k}, {m}))"
    return _Item(problem, steps, str(ans), rng.choice(_TIR_INTROS), code, str(ans),
                 f"The remainder is {ans}.")


# ----------------------------------------------------------------------------- gcd / lcm

def _gcd_lcm(rng: random.Random, d: int) -> _Item:
    n_nums = 3 if d == 3 else 2
    base = rng.randint(2, {1: 6, 2: 15, 3: 12}[d])
    hi = {1: 10, 2: 20, 3: 15}[d]
    nums = sorted({base * rng.randint(1, hi) for _ in range(n_nums)})
    while len(nums) < n_nums or nums[0] == 1:
        nums = sorted({base * rng.randint(2, hi) for _ in range(n_nums)})
    want = rng.choice(["gcd", "lcm"])
    listed = ", ".join(map(str, nums[:-1])) + f" and {nums[-1]}"
    args = ", ".join(map(str, nums))
    if want == "gcd":
        ans = math.gcd(*nums)
        problem = rng.choice([f"What is the greatest common divisor of {listed}?",
                              f"Find $\\gcd({args})$.",
                              f"What is the largest integer that divides each of {listed}?",
                              f"Compute the GCD of {listed}."])
        rule = "The GCD takes each common prime to its smallest exponent"
    else:
        ans = math.lcm(*nums)
        problem = rng.choice([f"What is the least common multiple of {listed}?",
                              f"Find $\\operatorname{{lcm}}({args})$.",
                              (f"What is the smallest positive integer divisible by each of "
                              f"{listed}?"),
                              f"Compute the LCM of {listed}."])
        rule = "The LCM takes each prime to its largest exponent"
    steps = [f"${n} = {_factor_tex(n)}$." for n in nums]
    factored = _factor_tex(ans)
    steps.append(f"{rule}: ${factored} = {ans}$." if factored != str(ans) else
                 f"{rule}: {ans}.")
    code = f"import math\nprint(math.{want}({args}))"
    return _Item(problem, steps, str(ans), rng.choice(_TIR_INTROS), code, str(ans),
                 f"The {want.upper()} is {ans}.")


# ----------------------------------------------------------------------------- counting

_WORDS = ["BANANA", "LETTER", "ALABAMA", "COOKBOOK", "TOMATO", "PEPPER", "SUCCESS",
          "ASSESS", "BALLOON", "COFFEE", "GAMMA", "PARABOLA", "LEVEL", "REFERENCE", "ERROR"]


def _counting(rng: random.Random, d: int) -> _Item:
    choice = rng.randint(0, 2)
    if d == 1 and choice == 0:
        n = rng.randint(3, 7)
        ans = math.factorial(n)
        problem = rng.choice([f"In how many ways can {n} different books be arranged on a shelf?",
                              f"How many ways can {n} people stand in a line?",
                              f"How many orderings of {n} distinct cards are there?"])
        steps = [f"Each arrangement is an ordering of {n} distinct objects: ${n}! = {ans}$."]
        code = f"from math import factorial\nprint(factorial({n}))"
    elif d == 1:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(2, 5) if choice == 2 else 1
        ans = a * b * c
        extra = f" and {c} hats" if c > 1 else ""
        problem = rng.choice([
            (f"A student has {a} shirts and {b} pairs of pants{extra}. How many different "
            f"outfits can the student make?"),
            f"How many outfits consist of one of {a} shirts, one of {b} pants"
            + (f" and one of {c} hats" if c > 1 else "") + "?"])
        prod = f"{a} \\times {b}" + (f" \\times {c}" if c > 1 else "")
        steps = [f"By the multiplication principle there are ${prod} = {ans}$ outfits."]
        code = f"print({a} * {b}" + (f" * {c}" if c > 1 else "") + ")"
    elif d == 2 and choice == 0:
        n, k = rng.randint(5, 30), rng.randint(2, 4)
        ans = math.perm(n, k)
        roles = ["a president", "a vice-president", "a treasurer", "a secretary"][:k]
        problem = rng.choice([
            (f"In how many ways can {', '.join(roles[:-1])} and {roles[-1]} be chosen from a "
            f"club of {n} members, if no one holds two offices?"),
            (f"How many ways can {k} distinct prizes be given to {n} students if each "
            f"student gets at most one prize?"),
            (f"In a race with {n} runners and no ties, how many ways can the first {k} places "
            f"be filled?")])
        factors = " \\times ".join(str(n - i) for i in range(k))
        steps = [(f"The first choice has {n} options, the next {n - 1}, and so on: "
                 f"${factors} = {ans}$.")]
        code = f"from math import perm\nprint(perm({n}, {k}))"
    elif d == 2:
        n, k = rng.randint(6, 30), rng.randint(2, 5)
        ans = math.comb(n, k)
        if k == 2 and rng.random() < 0.5:
            problem = rng.choice([(f"{n} people each shake hands once with everyone else. "
                                  f"How many handshakes are there?"),
                                  (f"How many line segments join pairs of {n} points, no three "
                                  f"on a line?")])
        else:
            problem = rng.choice([f"How many ways are there to choose {k} books from {n}?",
                                  (f"In how many ways can a committee of {k} be chosen from "
                                  f"{n} people?"), f"Compute $\\binom{{{n}}}{{{k}}}$.",
                                  (f"How many {k}-element subsets does a set with {n} elements "
                                  f"have?")])
        steps = [(f"Order does not matter, so the count is $\\binom{{{n}}}{{{k}}} = "
                 f"\\frac{{{n}!}}{{{k}!\\,{n - k}!}} = {ans}$.")]
        code = f"from math import comb\nprint(comb({n}, {k}))"
    elif choice == 0:
        word = rng.choice(_WORDS)
        counts = Counter(word)
        ans = math.factorial(len(word))
        for c in counts.values():
            ans //= math.factorial(c)
        reps = [f"{ch} {c} times" for ch, c in sorted(counts.items()) if c > 1]
        problem = rng.choice([(f"How many distinct arrangements of the letters of {word} are "
                              f"there?"),
                              (f"In how many different ways can the letters of the word {word} "
                              f"be arranged?")])
        denom = " \\cdot ".join(f"{c}!" for c in counts.values() if c > 1)
        steps = [f"{word} has {len(word)} letters, with " + ", ".join(reps) + ".",
                 f"The count is $\\frac{{{len(word)}!}}{{{denom}}} = {ans}$."]
        code = ("from math import factorial\nfrom collections import Counter\n"
                f"word = \"{word}\"\ntotal = factorial(len(word))\n"
                "for c in Counter(word).values():\n    total //= factorial(c)\nprint(total)")
    else:
        men, women = rng.randint(4, 9), rng.randint(4, 9)
        k = rng.randint(3, 5)
        j = rng.randint(1, min(k - 1, women))
        ans = math.comb(women, j) * math.comb(men, k - j)
        problem = rng.choice([
            (f"A committee of {k} is chosen from {men} men and {women} women. In how many ways "
            f"can it have exactly {j} women?"),
            (f"From {women} girls and {men} boys, how many teams of {k} contain exactly {j} "
            f"girls?")])
        steps = [(f"Choose the {j} from the {women}: $\\binom{{{women}}}{{{j}}} = "
                 f"{math.comb(women, j)}$."),
                 (f"Choose the other {k - j} from the {men}: $\\binom{{{men}}}{{{k - j}}} = "
                 f"{math.comb(men, k - j)}$."),
                 f"Multiply: ${math.comb(women, j)} \\times {math.comb(men, k - j)} = {ans}$."]
        code = f"from math import comb\nprint(comb({women}, {j}) * comb({men}, {k - j}))"
    return _Item(problem, steps, str(ans), "Let me count it in Python.", code, str(ans),
                 f"There are {ans} ways.")


# ----------------------------------------------------------------------------- word problems

def _from_story(s: Story) -> _Item:
    return _Item(s.problem, s.steps, s.answer, "Let me set up the quantities in Python.",
                 s.code, s.answer, f"The code gives {s.answer}.")


def _word_problem(rng: random.Random, d: int) -> _Item:
    return _from_story(word_problem(rng, d))  # stories.py: one-step and short stories


def _story(rng: random.Random, d: int) -> _Item:
    return _from_story(story(rng, d))  # stories.py: two-step stories told many ways


GENERATORS: dict[str, Callable[[random.Random, int], _Item]] = {
    "arithmetic": _arithmetic,
    "fractions": _fractions,
    "linear_equation": _linear_equation,
    "modular": _modular,
    "gcd_lcm": _gcd_lcm,
    "counting": _counting,
    "word_problem": _word_problem,
    "story": _story,
}
KINDS = tuple(GENERATORS)


def _to_record(item: _Item, rng: random.Random, kind: str, difficulty: int,
               seed: int, index: int) -> MathRecord:
    conclusion = rng.choice(_CONCLUSIONS).format(a=item.answer)
    cot = "\n".join(item.steps + [conclusion])
    tir = (f"{item.setup}\n```python\n{item.code}\n```\n```output\n{item.printed}\n```\n"
           f"{item.reading} {conclusion}")
    return MathRecord(problem=item.problem, solution=cot, answer=item.answer, source=SOURCE,
                      metadata={"id": f"synthetic-{seed}-{index}", "kind": kind,
                                "subject": kind, "level": difficulty, "tir_solution": tir})


def generate_synthetic(n: int, seed: int = 0, *, kinds: list[str] | None = None,
                       difficulty: int | None = None) -> list[MathRecord]:
    """`n` distinct problems (distinct statements) with exact answers, CoT and TIR solutions.

    `kinds` restricts the problem kinds (default: all of KINDS, drawn uniformly);
    `difficulty` fixes the level 1-3 (default: drawn uniformly per item).
    """
    from aimo3_recipe.exceptions import ConfigError

    kinds = list(kinds) if kinds else list(KINDS)
    bad = [k for k in kinds if k not in GENERATORS]
    if bad:
        raise ConfigError(f"unknown synthetic kind(s) {bad}; choose from {list(KINDS)}")
    if difficulty is not None and difficulty not in (1, 2, 3):
        raise ConfigError(f"synthetic difficulty must be 1, 2 or 3; got {difficulty!r}")
    if n < 0:
        raise ConfigError(f"number of synthetic problems must be >= 0; got {n}")
    seen: set[str] = set()
    out: list[MathRecord] = []
    for i in range(n):
        rng = random.Random(f"aimo3-synthetic:{seed}:{i}")
        kind = rng.choice(kinds)
        level = difficulty or rng.randint(1, 3)
        for _attempt in range(50):  # small pools can repeat: redraw (same kind and level)
            item = GENERATORS[kind](rng, level)
            if item.problem not in seen:
                break
        seen.add(item.problem)
        out.append(_to_record(item, rng, kind, level, seed, i))
    return out
