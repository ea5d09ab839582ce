"""Answer extraction, the public verifier API, AIMO mode and one check per answer type.

The per-type cases live in tests/data/grader_cases.jsonl (source "own"), with the public
graders' own test cases; test_verifier_cases.py scores the whole file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimo3_recipe.evaluation.answer_extraction import (
    GradeResult,
    answer_key,
    extract_answer,
    grade,
    modulus_from_problem,
    verify_answer,
    verify_batch,
)
from aimo3_recipe.grader import equivalence

CASES = [
    json.loads(x)
    for x in (Path(__file__).parent / "data" / "grader_cases.jsonl").read_text().splitlines()
]


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{3}", "3"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt{\\frac{3}{4}}}", "\\sqrt{\\frac{3}{4}}"),
        ("\\fbox{12}", "12"),
        ("\\boxed 7", "7"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("<think>maybe \\boxed{1}</think> so \\boxed{2}", "2"),  # later box wins across <think>
        ("\\boxed{5} and later \\boxed{3", None),  # an unclosed final box is no answer
        ("\\boxed{}", None),
        ("\\boxed{1}, \\boxed{2}", "1, 2"),  # boxes that together form one answer
        ("\\boxed{5}\n\\boxed{5}", "5"),  # a repeated box is one answer
        ("\\boxed{1} no no no no no \\boxed{2}", "2"),
        ("The answer is $\\frac12$.", "\\frac12"),
        ("**Answer:** 42", "42"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("Reasoning.\n#### 1,234", "1,234"),
        ("We get 3 apples and 4 pears, 7 in total.", "7"),
        ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"),
        ("AZYUK2A", None),  # digits inside a word are not a number
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_grade_result_fields():
    r = grade("Thinking... \\boxed{\\dfrac{1}{2}}", "0.5")
    assert r == GradeResult(extracted="\\dfrac{1}{2}", correct=True, boxed=True, status="ok")
    assert not r.timed_out
    r = grade("I think it is 7", "7")
    assert (r.correct, r.boxed) == (True, False)
    r = grade("\\boxed{7", "7")  # truncated completion
    assert (r.extracted, r.correct, r.boxed) == (None, False, False)


# ---------------------------------------------------------------- API contract


def test_verify_answer_none_and_garbage_never_raise():
    assert verify_answer(None, "3") is False
    assert verify_answer("", "3") is False
    assert verify_answer("\\frac{", "3") is False
    assert verify_answer("}}}{{{", "}}}{{{") is True  # equal strings are equal


def test_verify_batch_matches_single_calls_and_checks_lengths():
    preds = ["1/2", None, "x=3", "(1,2)"]
    refs = ["0.5", "1", "3", "(2,1)"]
    assert verify_batch(preds, refs) == [True, False, True, False]
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        verify_batch(["1", "2"], ["1"])


def test_answer_key_groups_equivalent_answers_without_sympy(monkeypatch):
    def no_sympy(*a, **k):
        raise AssertionError("answer_key asked sympy")

    monkeypatch.setattr(equivalence, "_sympy", no_sympy)
    assert answer_key("\\frac{1}{2}") == answer_key("0.5") == answer_key("$\\dfrac12$") == "1/2"
    assert answer_key("x = 12{,}345") == answer_key("12345") == "12345"
    assert answer_key("\\{2, 1\\}") == answer_key("\\{1,2\\}")
    assert answer_key("(1,2)") != answer_key("(2,1)")
    assert answer_key("3") != answer_key("4")
    assert answer_key(None) is None and answer_key("  ") is None


def test_equal_answer_keys_imply_verified_equal():
    answers = [
        "0.5",
        "\\frac12",
        "50\\%",
        "x=3",
        "3",
        "3.0",
        "\\{1,2\\}",
        "2, 1",
        "(1,2)",
        "[1,2]",
        "\\sqrt{12}",
        "2\\sqrt3",
        "A",
        "(A)",
        "\\text{yes}",
    ]
    for a in answers:
        for b in answers:
            if answer_key(a) == answer_key(b):
                assert verify_answer(a, b), (a, b)


# ---------------------------------------------------------------- AIMO mode


@pytest.mark.parametrize(
    "problem, m",
    [
        ("Find the remainder when $2^{100}$ is divided by $1000$.", 1000),
        ("What is the remainder when N is divided by 7?", 7),
        ("Compute $S \\pmod{11}$.", 11),
        ("Give your answer modulo $10^{5}$.", 100000),
        ("Find $a$ mod 99991.", 99991),
        ("How many primes are below 100?", None),
        ("Let $S$ be the set of residues modulo $7$ of the cubes. Some more set-up here. "
         "How many elements does $S$ have?", None),
        ("Let $N$ be the number of such sequences. Find the remainder when $N$ is divided by "
         "$1000$.", 1000),
    ],
)
def test_modulus_from_problem(problem, m):
    assert modulus_from_problem(problem) == m


def test_aimo_mode():
    p = "Find the remainder when $N$ is divided by $1000$."
    assert verify_answer("100042", "42", aimo=True, problem=p)
    assert verify_answer("-958", "42", aimo=True, problem=p)
    assert not verify_answer("100042", "42", aimo=True)  # outside 0..99999, no modulus asked
    assert not verify_answer("42.5", "42", aimo=True)
    assert not verify_answer("-42", "42", aimo=True)
    assert verify_answer("042", "42", aimo=True) and verify_answer("x = 42", "42", aimo=True)


# ---------------------------------------------------------------- one test per answer type

OWN_TYPES = sorted({c["type"] for c in CASES if c["source"] == "own"})


@pytest.mark.parametrize("answer_type", OWN_TYPES)
def test_answer_type(answer_type):
    """Every hand-written case of this answer type gets our expected verdict."""
    wrong = []
    for c in CASES:
        if c["source"] != "own" or c["type"] != answer_type:
            continue
        pred = extract_answer(c["pred"]) if c["mode"] == "completion" else c["pred"]
        got = verify_answer(pred, c["ref"], aimo=c["aimo"], problem=c["problem"])
        if got != c["expected"]:
            wrong.append((c["id"], c["pred"], c["ref"], c["expected"], c["note"]))
    assert not wrong, wrong


def test_every_answer_type_has_cases():
    expected_types = {
        "integer",
        "fraction_decimal",
        "mixed_number",
        "radical",
        "pi_trig",
        "percent",
        "degrees",
        "units_text",
        "currency",
        "scientific",
        "assignment",
        "symbolic",
        "equation",
        "interval_inequality",
        "set_tuple",
        "matrix",
        "choice",
        "text",
        "aimo",
        "extraction",
        "adversarial",
    }
    assert expected_types <= set(OWN_TYPES)


def test_math_utils_find_boxed_is_linear_and_ordered():
    """utils.math_utils (shared helper, also the RL format reward) in position order, fast on
    degenerate completions."""
    import time

    from aimo3_recipe.utils.math_utils import find_boxed, has_boxed, last_boxed

    assert find_boxed("\\boxed{a} \\boxed{ \\boxed 5 \\fbox{b}") == ["a", "5", "b"]
    assert last_boxed("\\boxed{\\frac{1}{2}} then \\boxed{3") == "\\frac{1}{2}"
    t0 = time.monotonic()
    assert not has_boxed("\\boxed{" * 20000)
    assert time.monotonic() - t0 < 2.0


# ---------------------------------------------------------------- policies (docs/verifier.md)

ROOTS_IN_ORDER = "List the roots in increasing order."
IN_INTERVALS = "For which $x$ is $f(x) < 0$? Express your answer in interval notation."


@pytest.mark.parametrize(
    "pred, ref, problem, equal",
    [
        # order
        ("3, 1, 2", "1, 2, 3", None, True),
        ("3, 1, 2", "1, 2, 3", "Find all roots, separated by commas.", True),
        ("3, 1, 2", "1, 2, 3", ROOTS_IN_ORDER, False),
        ("2, 1", "(1, 2)", None, False),
        ("(5, 3)", "(3, 5)", None, False),
        ("b = 2, a = 1", "a = 1, b = 2", None, True),
        ("a = 2, b = 1", "a = 1, b = 2", None, False),
        # inequality vs point
        ("2 < x < 3", "(2, 3)", None, False),
        ("2 < x < 3", "(2, 3)", "Find the point where the lines meet.", False),
        ("2 < x < 3", "(2, 3)", IN_INTERVALS, True),
        ("(0, 1)", "0 < f(x) < 1", None, True),
        ("x > 2", "(2, \\infty)", None, True),
        ("x < 2 \\text{ or } x > 3", "(-\\infty,2)\\cup(3,\\infty)", None, True),
        # decimal comma
        ("2,74", "2.74", None, True),
        ("0,111", "0.111", None, True),
        ("1000,99", "1000.99", None, True),
        ("2,740", "2740", None, True),
        ("2,740", "2.74", None, False),
        ("2,74", "2, 74", None, True),
        ("1,5", "\\frac32", None, True),
        ("1.234,5", "1234.5", None, True),
        # rounding
        ("3.14159", "3.14", None, True),
        ("\\pi", "3.14", None, True),
        ("0.333", "\\frac13", None, True),
        ("0.33", "\\frac13", None, False),
        ("2.999", "3", None, False),
        ("40\\pi", "125.66", None, True),
        ("40\\pi", "125.7", None, False),
        ("1.0001", "1", None, False),
        # percent, units
        ("10\\%", "0.1", None, True),
        ("10\\%", "10", None, True),
        ("12 1/2\\%", "12.5\\%", None, True),
        ("72 degrees", "72", None, True),
        ("10cm", "10", None, True),
        ("\\$1.50", "1.5", None, True),
        ("R28", "28", None, False),
        # mixed numbers
        ("4 4/9", "\\frac{40}{9}", None, True),
        ("-7 3/4", "-\\frac{31}{4}", None, True),
        ("1 000 4/9", "\\frac{9004}{9}", None, True),
        ("3 5/4", "\\frac{17}{4}", None, False),
        ("4 and 4/9", "\\frac{40}{9}", None, True),
        ("4 and 4/9", "4, \\frac49", None, True),
        # modulus
        ("42 \\pmod{1000}", "42", None, True),
        ("1042 \\pmod{1000}", "42", None, True),
        ("42 (mod 1000)", "43", None, False),
        # choice letters
        ("A. Because B is not valid", "A", None, True),
        ("(B), since (A) gives a negative area", "B", None, True),
        ("(C) or (D)", "C", None, False),
        ("B, C", "B", None, False),
        # powers and roots
        ("x^{2/3}", "\\sqrt[3]{x^2}", None, True),
        ("x^{2/3}", "\\sqrt[3]{x}^2", None, True),
        ("x^{-1/2}", "\\frac{1}{\\sqrt x}", None, True),
        ("\\sqrt{x^2}", "x", None, False),
        ("|x|", "x", None, False),
        # unreduced fractions, equations
        ("\\frac{6}{8}", "\\frac34", None, True),
        ("x+y = 5", "5", None, False),
        ("0.\\overline{36}", "\\frac{4}{11}", None, True),
    ],
)
def test_policy_examples_in_the_docs(pred, ref, problem, equal):
    assert verify_answer(pred, ref, problem=problem) is equal


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(a) The area is \\boxed{6}. (b) The perimeter is \\boxed{12}.", "6, 12"),
        ("By (a) and (b) we are done: \\boxed{5}", "5"),
        ("The answer is 12, since 12 = 3 \\cdot 4.", "12"),
        ("Final Answer: The final answer is $\\$32$. I hope it is correct.", "\\$32"),
        ("So N is congruent to 42 (mod 1000).", "42 \\pmod{1000}"),
        ("Total: 18.\n####: 18", "18"),
        ("The correct option is (D).", "(D)"),
        ("values 1,2,3", "3"),
        ("so it is 2,74 kg", "2,74"),
    ],
)
def test_extraction_policies(text, expected):
    assert extract_answer(text) == expected
