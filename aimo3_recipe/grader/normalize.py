"""String normalisation of final answers and an exact rational-arithmetic parser.

This is the verifier's fast path: most answers in maths benchmarks are integers, fractions,
decimals or short LaTeX that become equal after cleaning, so they are decided here with no
sympy. Limits: only + - * / ^ on rationals, `\\frac`, mixed numbers (`2\\frac12`, `4 4/9`),
repeating decimals (`0.\\overline{36}`), `\\sqrt` of perfect squares, percentages and
scientific notation are evaluated; anything else (pi, radicals, variables) is left to the
symbolic path. Every operation is size-capped, so no input can make this module slow.
Also here: the modulus annotation of an answer (`42 \\pmod{1000}`) and the decimal-comma
reading of a lone number (`2,74`), both used by `equivalence` (policies: docs/verifier.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_ANSWER_CHARS = 2000  # longer "answers" are compared as strings only

# ---------------------------------------------------------------- LaTeX cleaning

_TEXT_CMDS = r"\\(?:textnormal|text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|textsf|mathsf|operatorname|emph|hbox)"
_UNIT_WORDS = (
    r"(?:square\s+|sq\.?\s+|cubic\s+)?(?:units?|unit\s+squared|cm|centimeters?|centimetres?|mm|km|"
    r"meters?|metres?|m|inches?|inch|in\.|feet|foot|ft|yards?|yd|miles?|mi|mph|kg|grams?|g|"
    r"pounds?|lbs?|ounces?|oz|seconds?|sec|s|minutes?|min|hours?|hr|hrs|h|days?|weeks?|"
    r"months?|years?|dollars?|cents?|euros?|degrees?|deg|radians?|rad|liters?|litres?|l|ml|"
    r"gallons?|people|persons?|students?|ways?|cookies|apples|marbles|books|pages|points?|"
    r"sq\s*units?|square\s+(?:units?|feet|inches|meters|centimeters|cm|m|ft|in|miles|yards))"
)
_UNIT_TAIL = re.compile(
    r"(?<=[\d}\)a-z])\s*(?:\^\{?\s*[23]\s*\}?)?\s*(?:"
    + _UNIT_WORDS
    + r")(?:\s*\^\{?\s*[23]\s*\}?)?\s*\.?$",
    re.IGNORECASE,
)
_SPACE_CMDS = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\textstyle|\\limits|~")


def strip_outer_math(s: str) -> str:
    """Remove `$...$`, `\\(...\\)`, `\\[...\\]` wrappers and a trailing full stop."""
    s = s.strip()
    changed = True
    while changed and s:
        changed = False
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
                s, changed = s[len(a) : len(s) - len(b)].strip(), True
        if s.endswith(".") and not s.endswith(".."):
            s, changed = s[:-1].strip(), True
    return s


def _unwrap_cmd(s: str, cmd_re: str) -> str:
    """`\\text{abc}` -> `abc` for a command regex, braces matched (nested ok)."""
    pat = re.compile(cmd_re + r"\s*\{")
    for _ in range(50):
        m = pat.search(s)
        if not m:
            break
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += (s[i] == "{") - (s[i] == "}")
            i += 1
        if depth:
            break
        s = s[: m.start()] + s[m.end() : i - 1] + s[i:]
    return s


def _fix_frac_shorthand(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{2}` -> `\\frac{1}{2}`, `\\sqrt3` -> `\\sqrt{3}`."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([a-zA-Z])\s*([a-zA-Z0-9])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*([a-zA-Z])(?![a-zA-Z])", r"\\frac{\1}{\2}", s)  # \frac1b
    s = re.sub(r"\\frac\s*(\\[a-zA-Z]+)(?![a-zA-Z])\s*(\d|[a-zA-Z](?![a-zA-Z]))", r"\\frac{\1}{\2}", s)  # \frac\pi 2
    s = re.sub(r"\\sqrt\s*(\d+|[a-zA-Z])(?![\d])", r"\\sqrt{\1}", s)
    return s


_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split())
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
     "ninety": 90, "hundred": 100, "thousand": 1000}
_SCALE_WORDS = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_WRAPPER = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _unwrap_whole(s: str) -> str:
    """`\\boxed{X}` and markdown `**X**` around the whole answer -> `X`."""
    for _ in range(3):
        t = s.strip()
        m = _WRAPPER.match(t)
        if m and t.endswith("}"):
            depth, ok = 0, True
            for i in range(m.end() - 1, len(t)):
                depth += (t[i] == "{") - (t[i] == "}")
                if depth == 0 and i != len(t) - 1:
                    ok = False
                    break
            if ok:
                s = t[m.end() : -1]
                continue
        if len(t) > 4 and t.startswith("**") and t.endswith("**") and "**" not in t[2:-2]:
            s = t[2:-2]
            continue
        break
    return s


def clean_latex(s: str) -> str:
    """Canonical spelling of an answer string: wrappers (`$`, `\\boxed{}`, `**bold**`),
    spacing, text/unit/degree/currency decorations removed, `\\dfrac` -> `\\frac`, thousands
    separators dropped, number words (`twelve`, `2.5 million`) as digits."""
    s = strip_outer_math(_unwrap_whole(strip_outer_math(s)))
    if len(s) > MAX_ANSWER_CHARS:
        return s
    s = s.replace("\u2212", "-").replace("\u00b7", "\\cdot ").replace("\u00d7", "\\times ")
    s = s.replace("\u221a", "\\sqrt").replace("\u03c0", "\\pi ").replace("\u221e", "\\infty ")
    s = s.replace("\u2264", "\\le ").replace("\u2265", "\\ge ")
    if (
        "\\begin" not in s
    ):  # `\\frac` (an escaping artefact) is `\frac`; in matrices `\\` is a row break
        s = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", s)
    s = s.rstrip("\\").strip()
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\lt(?![a-zA-Z])", "<", s)
    s = re.sub(r"\\gt(?![a-zA-Z])", ">", s)
    s = re.sub(r",\\!\s*(?=\d{3}(?!\d))", ",", s)  # 11,\! 111 (thousands)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\bigl", "").replace("\\bigr", "")
    s = re.sub(r"\\[Bb]igg?[lr]?(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3}(?!\d))", "", s)  # 12{,}345 is always a thousands separator
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<=\d)\\[,! ](?=\d{3}(?!\d))", "", s)  # 12\,345 / 12\!345
    s = _SPACE_CMDS.sub(" ", s)
    s = s.replace("\\$", " ").replace("$", " ").replace("\u20ac", " ").replace("\u00a3", " ")
    s = re.sub(r"\\(?:euro|pounds)(?![a-zA-Z])", " ", s)
    # degrees: 30^\circ, 30^{\circ}, 30°, \degree
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s).replace("\u00b0", "").replace("\\degree", "")
    s = re.sub(r"\\(?:le|leq|leqslant)(?![a-zA-Z])", "\\\\le ", s)
    s = re.sub(r"\\(?:ge|geq|geqslant)(?![a-zA-Z])", "\\\\ge ", s)
    s = re.sub(r"\\(?:neq|ne)(?![a-zA-Z])", "\\\\ne ", s)
    s = s.replace("<=", "\\le ").replace(">=", "\\ge ").replace("!=", "\\ne ")
    s = re.sub(r"\\equiv(?![a-zA-Z])", "=", s)  # N \equiv 42 \pmod{m}: the modulus is split later
    s = re.sub(r"\\(?:ldots|cdots|dots)(?![a-zA-Z])|\.\.\.|\u2026", "\\\\dots ", s)
    s = re.sub(r"\\(?:varnothing|emptyset)(?![a-zA-Z])|^\\\{\s*\\\}$", "\\\\emptyset ", s)
    # units written as text after a number: 5 \text{ cm}, 10\mbox{ dollars}
    s = re.sub(
        _TEXT_CMDS + r"\s*\{\s*(?:" + _UNIT_WORDS + r")\s*(?:\^\{?[23]\}?)?\s*\}(\s*\^\{?[23]\}?)?",
        " ",
        s,
        flags=re.IGNORECASE,
    )
    s = _unwrap_cmd(s, _TEXT_CMDS)
    # markdown bold inside an answer (**131** dollars), not Python powers (x**2)
    s = re.sub(r"(?<![\w)}\]])\*\*(?!\s)(.+?)(?<!\s)\*\*(?![\w({\[])", r"\1", s)
    s = re.sub(r",\s*and\s+", ", ", s)  # 3,\text{and} 4 -> 3, 4
    s = re.sub(r"\\mathbb\s*\{\s*R\s*\}", "\\\\mathbb{R}", s)
    if re.fullmatch(r"\s*(?:\\mathbb\{R\}|all real numbers)\s*", s, re.IGNORECASE):
        s = "(-\\infty, \\infty)"
    s = _fix_frac_shorthand(s)
    s = re.sub(r"(?<=\d)\s*(?:percentage|percent|pct)\b", "\\\\%", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = _words_to_number(s)
    s = re.sub(r"^(-?\d+)\s*(?:st|nd|rd|th)$", r"\1", s)  # 5\mathrm{th}, 21st
    unit = _UNIT_TAIL.search(s) if re.search(r"\d", s) else None
    if (
        unit and parse_number(s[: unit.start()].strip()) is not None
    ):  # 5 cm -> 5, never 2x+3h -> 2x+3
        s = s[: unit.start()].strip()
    s = strip_outer_math(s)
    # `x \approx 11` -> 11;  `\frac{\sqrt3}{3} \approx 0.577` -> the exact value
    if "\\approx" in s:
        head, _, tail = s.partition("\\approx")
        head = head.strip()
        s = (
            tail.strip()
            if re.fullmatch(r"[a-zA-Z](?:_\{?\w+\}?)?|", head)
            else head.split("=")[-1].strip() or head
        )
    # a number followed by words only: `17 apples`, `17 any text` (NeMo-Skills convention)
    m = re.fullmatch(r"(-?[\d.,]*\d(?:\\%)?)\s+([a-zA-Z][a-zA-Z .'-]*)", s)
    if m and not re.search(r"\b(?:and|or)\b", m.group(2)):
        s = m.group(1)
    # thousands separators in a lone number: 12,345 / 1,234,567.5 (not "1, 2", not "0,111")
    if re.fullmatch(r"-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    elif ", " in s:  # (1,234, 5): comma-space separates items, so 1,234 is one number
        s = re.sub(r"(?<![\d.])([1-9]\d{0,2})((?:,\d{3})+)(?=,\s|[^\d,]|$)",
                   lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    return s


def _words_to_number(s: str) -> str:
    """A whole answer written in words -> digits: `twelve`, `twenty one`, `2.5 million`,
    `3 billion dollars` (only number words; anything else is left as it is)."""
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(thousand|million|billion|trillion)\b(.*)", s)
    if m:
        value = Fraction(m.group(1)) * 10 ** _SCALE_WORDS[m.group(2)]
        return format_fraction(value) + m.group(3)
    words = s.lower().replace("-", " ").split()
    if not words or len(words) > 4 or any(w not in _NUMBER_WORDS for w in words):
        return s
    total = 0
    for w in words:
        v = _NUMBER_WORDS[w]
        total = total * v if v in (100, 1000) and total else total + v
    return str(total)


def compact(s: str) -> str:
    """The cleaned string with every space removed (for string equality)."""
    return re.sub(r"\s+", "", s)


# ---------------------------------------------------------------- exact rational parser


@dataclass(frozen=True)
class Number:
    """An exactly parsed numeric answer."""

    value: Fraction  # the exact value
    decimals: (
        int | None
    )  # digits after the point when written as one decimal literal (rounded value)
    percent: bool = False  # written with a % sign (value already divided by 100)


class _ParseFail(Exception):
    pass


_MAX_BITS = 4096  # numbers larger than 2^4096 are left to the string comparison
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+)|(?P<op>\*\*|[-+*/^(){}\[\]!%])|(?P<e>[eE](?=[-+]?\d)))"
)


def _tokenize(s: str) -> list[str]:
    toks, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise _ParseFail(s[pos:])
        toks.append(m.group().strip())
        pos = m.end()
    return toks


def _check(x: Fraction) -> Fraction:
    if x.numerator.bit_length() > _MAX_BITS or x.denominator.bit_length() > _MAX_BITS:
        raise _ParseFail("too large")
    return x


class _RationalParser:
    """Recursive descent over LaTeX arithmetic. Grammar (loosest first):
    sum := term (('+'|'-') term)*;  term := unary (('*'|'\\cdot'|'\\times'|'/'|'\\div'|implicit) unary)*
    unary := ('-'|'+') unary | power;  power := atom ('^' unary)?;  atom := number | group | \\frac | \\sqrt."""

    def __init__(self, toks: list[str]):
        self.t, self.i = toks, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise _ParseFail(f"expected {want}")
        self.i += 1
        return tok

    def parse(self) -> Fraction:
        v = self.sum()
        if self.peek() is not None:
            raise _ParseFail("trailing")
        return v

    def sum(self) -> Fraction:
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            w = self.term()
            v = _check(v + w if op == "+" else v - w)
        return v

    def term(self) -> Fraction:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                v = _check(v * self.unary())
            elif tok in ("/", "\\div"):
                self.take()
                d = self.unary()
                if d == 0:
                    raise _ParseFail("division by zero")
                v = _check(v / d)
            elif tok in ("(", "\\sqrt"):  # implicit product: 2(3), 2\sqrt{4}
                v = _check(v * self.unary())
            elif tok == "\\frac":  # 3\frac12 is a mixed number only as a whole answer
                raise _ParseFail("ambiguous number before \\frac")
            else:
                return v

    def unary(self) -> Fraction:
        tok = self.peek()
        if tok == "-":
            self.take()
            return -self.unary()
        if tok == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Fraction:
        base = self.atom()
        if self.peek() == "e":  # 1.5e3
            self.take()
            sign = 1
            if self.peek() in ("+", "-"):
                sign = -1 if self.take() == "-" else 1
            exp = Fraction(self.take())
            return _check(base * Fraction(10) ** (sign * int(exp)))
        if self.peek() in ("^", "**"):
            self.take()
            exp = self.unary() if self.peek() != "{" else self.atom()
            if exp.denominator != 1 or abs(exp.numerator) > 10000:
                raise _ParseFail("exponent")
            if base == 0 and exp < 0:
                raise _ParseFail("0^-n")
            if abs(base.numerator).bit_length() * abs(exp.numerator) > _MAX_BITS * 2:
                raise _ParseFail("too large")
            return _check(base ** int(exp))
        return base

    def atom(self) -> Fraction:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return Fraction(tok)
        if tok in ("(", "{", "["):
            close = {"(": ")", "{": "}", "[": "]"}[tok]
            v = self.sum()
            self.take(close)
            return v
        if tok == "\\frac":
            self.take("{")
            n = self.sum()
            self.take("}")
            self.take("{")
            d = self.sum()
            self.take("}")
            if d == 0:
                raise _ParseFail("division by zero")
            return _check(n / d)
        if tok == "\\sqrt":
            if self.peek() == "[":
                raise _ParseFail("nth root")
            self.take("{")
            v = self.sum()
            self.take("}")
            return _exact_sqrt(v)
        raise _ParseFail(tok)


def _exact_sqrt(v: Fraction) -> Fraction:
    import math

    if v < 0:
        raise _ParseFail("sqrt of negative")
    n, d = math.isqrt(v.numerator), math.isqrt(v.denominator)
    if n * n != v.numerator or d * d != v.denominator:
        raise _ParseFail("irrational sqrt")
    return Fraction(n, d)


_PLAIN_DECIMAL = re.compile(r"[-+]?(\d*)\.(\d+)")
_MIXED = re.compile(r"([-+]?)\s*(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
# 4 4/9, -7 3/4, 1 000 4/9 (spaced thousands); the fraction is proper (a 3/4 is not 3 * 3/4)
_MIXED_SLASH = re.compile(r"([-+]?)\s*(\d{1,3}(?: \d{3})+|\d+)(?:\s|\\ )+(\d+)\s*/\s*(\d+)")
_SPACED_THOUSANDS = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_REPEATING = re.compile(r"([-+]?)(\d*)\.(\d*)\\overline\{(\d+)\}")
_PERCENT = re.compile(r"(.*?)\s*\\?%$")


def _repeating(m: re.Match) -> Fraction:
    """0.1\\overline{36} = 0.1363636... exactly."""
    whole, fixed, rep = m.group(2) or "0", m.group(3), m.group(4)
    value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
    return -value if m.group(1) == "-" else value


def parse_number(s: str) -> Number | None:
    """The exact value of a cleaned answer if it is rational arithmetic, else None.

    `0.5`, `\\frac{1}{2}`, `1/2`, `2\\frac{1}{2}` (mixed), `50\\%` (-> 1/2, percent=True),
    `1.5\\times10^{3}`, `2^{10}`. Never slow: sizes are capped."""
    s = s.strip()
    if not s or len(s) > 300:
        return None
    percent = False
    m = _PERCENT.fullmatch(s)
    if m:
        s, percent = m.group(1), True
    if _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(" ", "")
    dm = _PLAIN_DECIMAL.fullmatch(s)
    decimals = len(dm.group(2)) if dm else None
    try:
        mixed = _MIXED.fullmatch(s) or _MIXED_SLASH.fullmatch(s)
        rep = _REPEATING.fullmatch(s)
        if mixed:
            num, den = int(mixed.group(3)), int(mixed.group(4))
            if mixed.re is _MIXED_SLASH and not 0 < num < den:
                return None  # 3 5/4 is not a mixed number
            whole = Fraction(mixed.group(2).replace(" ", "")) + Fraction(num, den)
            value = -whole if mixed.group(1) == "-" else whole
        elif rep:
            value = _repeating(rep)  # an exact value, not a rounded one
        else:
            value = _RationalParser(_tokenize(s)).parse()
    except (_ParseFail, ValueError, ZeroDivisionError, OverflowError, IndexError):
        return None
    if percent:
        value /= 100
        decimals = None if decimals is None else decimals + 2
    return Number(value, decimals, percent)


def format_fraction(x: Fraction) -> str:
    """Canonical text of a rational: `3`, `-7/2`."""
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


# ---------------------------------------------------------------- modulus and decimal comma

_MODULUS = re.compile(
    r"^(?P<body>.+?)\s*(?:\\pmod\s*\{\s*(?P<m1>[^{}]+?)\s*\}|\\pmod\s*(?P<m2>\d+)"
    r"|\(\s*(?:\\bmod|\\mod|mod|modulo)\s*(?P<m3>[^()]+?)\s*\)"
    r"|(?:\\bmod|\\mod|\bmod|\bmodulo)\s*\{?\s*(?P<m4>\d+)\s*\}?)\s*\.?$"
)


def split_modulus(s: str) -> tuple[str, int | None]:
    """(`42`, 1000) for `42 \\pmod{1000}`, `42 (mod 1000)`, `42 \\bmod 1000`; (s, None) when
    the answer carries no modulus (or it is not an integer > 1)."""
    m = _MODULUS.match(s.strip())
    if not m:
        return s, None
    mod = next(g for g in (m.group("m1"), m.group("m2"), m.group("m3"), m.group("m4")) if g)
    num = parse_number(mod)
    if num is None or num.value.denominator != 1 or num.value < 2:
        return s, None
    return m.group("body").strip(), int(num.value)


_DECIMAL_COMMA = re.compile(r"(-?)(\d+),(\d+)")
_EURO_NUMBER = re.compile(r"(-?)(\d{1,3}(?:\.\d{3})+),(\d+)")


def decimal_comma(s: str) -> str | None:
    """The dotted reading of a lone number written with a decimal comma, else None: `2,74` ->
    `2.74`, `0,111` -> `0.111`, `1000,99` -> `1000.99`, `1.234,5` -> `1234.5`. A comma that can
    be a thousands separator (1-3 digits, no leading 0, then exactly 3 digits: `2,740`) is one,
    so it has no decimal reading. Only for a side compared with a single number (the caller
    decides; a list on the other side keeps `2,74` a list)."""
    s = s.strip()
    m = _EURO_NUMBER.fullmatch(s)
    if m:
        return f"{m.group(1)}{m.group(2).replace('.', '')}.{m.group(3)}"
    m = _DECIMAL_COMMA.fullmatch(s)
    if not m:
        return None
    head, tail = m.group(2), m.group(3)
    if len(tail) == 3 and 1 <= len(head) <= 3 and not head.startswith("0"):
        return None  # 2,740 is two thousand seven hundred and forty
    return f"{m.group(1)}{head}.{tail}"
