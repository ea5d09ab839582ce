"""Evaluation metrics as small pure functions over per-sample verdicts.

Every number in `results.json` comes from the same stored samples: for each problem, N sampled
completions (their canonical answer keys and verdicts) and optionally one greedy completion.
Shapes are named in the argument names: `correct_N` is one verdict per sample of a problem,
`scores_P` one score per problem.

Conventions (stated because papers differ):
- pass@k is the unbiased estimator of Chen et al. (2021), `1 - C(n-c, k) / C(n, k)`, averaged
  over problems; pass@1 is the mean fraction of correct samples.
- maj@k (SC@k) is the *expected* majority-vote accuracy over k-subsets of the N samples (exact
  when there are few subsets, a seeded Monte Carlo estimate otherwise). Samples without an
  answer do not vote; a tie for most votes scores 1/t when one of the t tied answers is right
  (the expected score of a random tie-break), so ties neither flatter nor punish a model.
- Confidence intervals: Wilson for a proportion of problems (greedy, chosen-strategy
  accuracy), a percentile bootstrap over problems for averaged scores (pass@1, maj@k), because
  AIME has 30 problems and reruns move by several points.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from statistics import NormalDist

import numpy as np

from aimo3_recipe.grader import STATUSES
from aimo3_recipe.inference.finish_reason import is_truncated


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n samples,
    c of them correct, is correct: `1 - C(n-c, k) / C(n, k)` (exact integer arithmetic)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n; got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n; got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(correct_P_N: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems (each problem may have its own number of samples >= k)."""
    if not correct_P_N:
        return 0.0
    return float(np.mean([pass_at_k(len(c), sum(c), k) for c in correct_P_N]))


def majority_score(keys_N: Sequence[Hashable | None], correct_N: Sequence[bool],
                   weights_N: Sequence[float] | None = None) -> float:
    """Score of a (weighted) vote among samples: 1 if the top answer is correct, 1/t if t
    answers tie for the top and one is correct, 0 if wrong or no sample has an answer.

    An answer group counts as correct when any of its samples was judged correct (equal keys
    share a verdict unless the grader disagrees with the canonicaliser; then we trust the grader).
    """
    if len(keys_N) != len(correct_N) or (weights_N is not None and len(weights_N) != len(keys_N)):
        raise ValueError("keys_N, correct_N (and weights_N) must have one entry per sample")
    votes: dict[Hashable, float] = defaultdict(float)
    group_correct: dict[Hashable, bool] = defaultdict(bool)
    for i, (key, ok) in enumerate(zip(keys_N, correct_N)):
        if key is None:
            continue
        votes[key] += 1.0 if weights_N is None else float(weights_N[i])
        group_correct[key] |= bool(ok)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [k for k, v in votes.items() if math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-12)]
    return sum(group_correct[k] for k in tied) / len(tied)


def majority_at_k(keys_N: Sequence[Hashable | None], correct_N: Sequence[bool], k: int, *,
                  max_subsets: int = 256, seed: int = 0) -> float:
    """Expected `majority_score` of a vote among k of the N samples: the mean over every
    k-subset when there are at most `max_subsets` of them, else over `max_subsets` seeded
    random subsets. maj@N is the vote among all samples."""
    n = len(keys_N)
    if not 1 <= k <= n:
        raise ValueError(f"majority_at_k needs 1 <= k <= N; got N={n}, k={k}")
    if math.comb(n, k) <= max_subsets:
        subsets: Sequence[Sequence[int]] = list(itertools.combinations(range(n), k))
    else:
        rng = random.Random(seed)
        subsets = [rng.sample(range(n), k) for _ in range(max_subsets)]
    scores = [majority_score([keys_N[i] for i in s], [correct_N[i] for i in s]) for s in subsets]
    return float(np.mean(scores))


def mean_majority_at_k(keys_P_N: Sequence[Sequence[Hashable | None]],
                       correct_P_N: Sequence[Sequence[bool]], k: int, *,
                       max_subsets: int = 256, seed: int = 0) -> float:
    """maj@k averaged over problems (problem i uses seed + i, so the estimate is reproducible)."""
    if not keys_P_N:
        return 0.0
    return float(np.mean([majority_at_k(keys, ok, k, max_subsets=max_subsets, seed=seed + i)
                          for i, (keys, ok) in enumerate(zip(keys_P_N, correct_P_N))]))


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion `successes / n` (sound near 0 and 1 and for
    small n, unlike the normal approximation). Returns (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n; got {successes}, {n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # centre - half is exactly p when p is 0 or 1; keep float noise from excluding p
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def bootstrap_interval(scores_P: Sequence[float], *, confidence: float = 0.95,
                       num_resamples: int = 1000, seed: int = 0,
                       statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-problem scores (problems resampled
    with replacement, seeded). A single problem or identical scores give a zero-width interval."""
    x = np.asarray(scores_P, dtype=float)
    if x.size == 0:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(num_resamples, x.size))
    stats = (statistic or (lambda a: a.mean(axis=1)))(x[idx])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def mean_interval(scores_P: Sequence[float], *, confidence: float = 0.95,
                  num_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Interval for a mean of per-problem scores in [0, 1]: the bootstrap, except when every
    problem scored 0 (or every one 1), where the bootstrap collapses to a point and would
    claim certainty from 30 problems; there the Wilson interval of the proportion is used."""
    x = [float(v) for v in scores_P]
    if x and (all(v == 0.0 for v in x) or all(v == 1.0 for v in x)):
        return wilson_interval(sum(x), len(x), confidence)
    return bootstrap_interval(x, confidence=confidence, num_resamples=num_resamples, seed=seed)


def sample_counts(ks: Sequence[int] | None, n: int) -> list[int]:
    """The k values to report for N samples: powers of two up to N, plus N itself."""
    if ks:
        return sorted({k for k in ks if 1 <= k <= n})
    out = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return sorted(set(out + [n])) if n >= 1 else []


def accuracy_curve(keys_P_N: Sequence[Sequence[Hashable | None]],
                   correct_P_N: Sequence[Sequence[bool]], ks: Sequence[int], *,
                   max_subsets: int = 256, seed: int = 0) -> dict[int, dict[str, float]]:
    """pass@k and maj@k for each k (the data behind the accuracy-vs-samples plot)."""
    return {k: {"pass": mean_pass_at_k(correct_P_N, k),
                "maj": mean_majority_at_k(keys_P_N, correct_P_N, k, max_subsets=max_subsets,
                                          seed=seed)}
            for k in ks}


def rate(flags: Sequence[bool]) -> float:
    """Fraction of true flags (0.0 for an empty list, so reports never divide by zero)."""
    return sum(bool(f) for f in flags) / len(flags) if flags else 0.0


def group_indices(labels_P: Sequence[Hashable | None]) -> dict[str, list[int]]:
    """Problem indices per label (subject, level), in sorted label order; None labels skipped."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels_P):
        if label is not None and str(label) != "":
            groups[str(label)].append(i)
    return dict(sorted(groups.items(), key=lambda kv: _natural_key(kv[0])))


def _natural_key(s: str) -> tuple:
    # "Level 10" after "Level 9"
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))



# -- aggregation over stored samples -----------------------------------------------------------
# A "problem row" is a dict: {"subject", "level", "greedy": record | None, "samples": [record],
# "chosen_correct": bool | None}; a record is one line of samples.jsonl (keys used here:
# correct, answer_key, num_tokens, finish_reason, boxed, grade_status, tir).

GRADER_STATUSES = STATUSES  # ok, timeout, too_complex, error


def grade_status(record: dict) -> str:
    """The grader's status of a stored verdict (records written before statuses existed only
    say whether the comparison timed out)."""
    return record.get("grade_status") or ("timeout" if record.get("grade_timed_out") else "ok")


def grader_status_counts(records: Sequence[dict]) -> dict[str, int]:
    """How many verdicts had each grader status (ok, timeout, too_complex, error): every
    status but ok is a "wrong" that may not be a real wrong answer."""
    counts = dict.fromkeys(GRADER_STATUSES, 0)
    for r in records:
        status = grade_status(r)
        counts[status] = counts.get(status, 0) + 1
    return counts


def completion_stats(records: Sequence[dict]) -> dict[str, float]:
    """Format and length diagnostics of a set of completions (one pass of an evaluation)."""
    stats = {
        "num_completions": len(records),
        "boxed_rate": rate([r.get("boxed", False) for r in records]),
        "no_answer_rate": rate([r.get("answer_key") is None for r in records]),
        "truncation_rate": rate([is_truncated(r.get("finish_reason")) for r in records]),
        "avg_completion_tokens": float(np.mean([r.get("num_tokens", 0) for r in records]))
        if records else 0.0,
        "grader_timeouts": sum(grade_status(r) == "timeout" for r in records),
        "grader_too_complex": sum(grade_status(r) == "too_complex" for r in records),
        "grader_errors": sum(grade_status(r) == "error" for r in records),
    }
    tir = [r["tir"] for r in records if r.get("tir")]
    if tir:
        calls = sum(t.get("code_calls", 0) for t in tir)
        stats.update({
            "tir/code_calls_per_completion": calls / len(tir),
            "tir/completions_with_code": rate([t.get("code_calls", 0) > 0 for t in tir]),
            "tir/code_errors": sum(t.get("code_errors", 0) for t in tir),
            "tir/code_timeouts": sum(t.get("code_timeouts", 0) for t in tir),
            "tir/error_rate": sum(t.get("code_errors", 0) for t in tir) / calls if calls else 0.0,
        })
    return stats


def summarize(rows_P: Sequence[dict], *, ks: Sequence[int] | None = None,
              confidence: float = 0.95, bootstrap_resamples: int = 1000, seed: int = 0,
              breakdown: bool = True) -> dict:
    """All accuracy metrics of an evaluation, with intervals, from its problem rows.

    `breakdown=False` gives only the headline numbers (used for the per-subject/level rows)."""
    out: dict = {"num_problems": len(rows_P)}
    greedy = [r["greedy"] for r in rows_P if r.get("greedy") is not None]
    if greedy and len(greedy) == len(rows_P):
        ok = [bool(g["correct"]) for g in greedy]
        out["greedy"] = {"accuracy": rate(ok), "ci": wilson_interval(sum(ok), len(ok), confidence),
                         **completion_stats(greedy)}
    sampled = [r.get("samples") or [] for r in rows_P]
    if all(sampled) and rows_P:
        n = min(len(s) for s in sampled)
        correct_P_N = [[bool(x["correct"]) for x in s[:n]] for s in sampled]
        keys_P_N = [[x.get("answer_key") for x in s[:n]] for s in sampled]
        pass1_P = [sum(c) / n for c in correct_P_N]
        maj_P = [majority_score(k, c) for k, c in zip(keys_P_N, correct_P_N)]
        out["sampled"] = {"num_samples": n, "pass@1": float(np.mean(pass1_P)),
                          f"maj@{n}": float(np.mean(maj_P)),
                          f"pass@{n}": mean_pass_at_k(correct_P_N, n)}
        if breakdown:  # the full report; breakdown rows only need the headline numbers
            boot = {"confidence": confidence, "num_resamples": bootstrap_resamples, "seed": seed}
            curve = accuracy_curve(keys_P_N, correct_P_N, sample_counts(ks, n), seed=seed)
            out["sampled"].update({
                "pass@1_ci": mean_interval(pass1_P, **boot),
                f"maj@{n}_ci": mean_interval(maj_P, **boot),
                "curve": {str(k): v for k, v in curve.items()},
                **completion_stats([x for s in sampled for x in s[:n]]),
            })
    chosen = [r.get("chosen_correct") for r in rows_P]
    if rows_P and all(c is not None for c in chosen):
        ok = [bool(c) for c in chosen]
        out["strategy"] = {"accuracy": rate(ok), "ci": wilson_interval(sum(ok), len(ok), confidence)}
    if breakdown:
        for field in ("subject", "level"):
            groups = group_indices([r.get(field) for r in rows_P])
            if len(groups) > 1 or (groups and len(next(iter(groups.values()))) < len(rows_P)):
                out[f"by_{field}"] = {
                    label: _flatten(summarize([rows_P[i] for i in idx], confidence=confidence,
                                              seed=seed, breakdown=False))
                    for label, idx in groups.items()}
    return out


def _flatten(summary: dict) -> dict[str, float]:
    """The headline numbers of a (sub)summary, for breakdown tables."""
    flat: dict[str, float] = {"n": summary["num_problems"]}
    if "greedy" in summary:
        flat["greedy"] = summary["greedy"]["accuracy"]
    if "sampled" in summary:
        s = summary["sampled"]
        flat["pass@1"] = s["pass@1"]
        flat[f"maj@{s['num_samples']}"] = s[f"maj@{s['num_samples']}"]
    if "strategy" in summary:
        flat["strategy"] = summary["strategy"]["accuracy"]
    return flat
