"""AIMO answer normalisation: integers 0..99999, a remainder when the problem asks for one,
leading zeros, thousands separators, no answer; each case says why."""

from __future__ import annotations

import pytest

from aimo3_recipe.inference.aimo.answers import normalise_answer, parse_integer


@pytest.mark.parametrize("raw,value", [
    ("42", 42), ("042", 42), ("00000", 0), ("12,345", 12345), ("42.0", 42),
    ("x = 42", 42), ("n=7", 7), ("$99999$", 99999), ("\\frac{84}{2}", 42), ("42.", 42),
])
def test_in_range_integers_are_ok(raw, value):
    a = normalise_answer(raw, "Find n.")
    assert (a.value, a.status, a.valid) == (value, "ok", True)


@pytest.mark.parametrize("raw", ["100000", "-1", "123456789"])
def test_out_of_range_without_a_modulus_does_not_vote(raw):
    a = normalise_answer(raw, "How many ways are there?")
    assert (a.value, a.status, a.valid) == (None, "out_of_range", False)


@pytest.mark.parametrize("problem,raw,value", [
    ("Let N be the number of such sets. Find the remainder when N is divided by 1000.",
     "123456", 456),
    ("Compute 2^{100} modulo 7.", "-3", 4),
    ("Find $x \\pmod{11}$.", "25", 3),
    ("What is the remainder when $3^{50}$ is divided by $10^5$?", "717897987691852588770249",
     717897987691852588770249 % 100000),
])
def test_a_remainder_problem_reduces_the_answer(problem, raw, value):
    a = normalise_answer(raw, problem)
    assert (a.value, a.status) == (value, "reduced")


def test_already_reduced_answer_stays_ok():
    a = normalise_answer("456", "Find the remainder when N is divided by 1000.")
    assert (a.value, a.status) == (456, "ok")


def test_explicit_modulus_overrides_the_problem_text():
    assert normalise_answer("1005", "Find n.", modulus=1000).value == 5


@pytest.mark.parametrize("raw", ["3/2", "0.5", "\\sqrt{2}", "x + 1", "50\\%"])
def test_non_integers_do_not_vote(raw):
    a = normalise_answer(raw, "Find n.")
    assert (a.value, a.status) == (None, "not_integer")


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_answer(raw):
    a = normalise_answer(raw, "Find n.")
    assert (a.value, a.status, a.raw) == (None, "none", raw)


def test_parse_integer():
    assert parse_integer("1,000") == (1000, "ok")
    assert parse_integer("seven") == (7, "ok")  # the grader reads number words
    assert parse_integer("banana") == (None, "not_integer")
