"""Our grader vs math-verify on the same labelled cases, in one run: the development part and
the locked part reported separately.

    python bench/bench_verifier.py [--show-errors] [--show-locked-errors]

Development part (what the grader is fixed against): tests/data/grader_cases.jsonl (the public
graders' own tests: Math-Verify, NeMo-Skills math_equal, Hendrycks MATH is_equiv,
tinker-cookbook grade_answer, plus our per-type and AIMO cases) and tests/data/grader_dev.jsonl
(issue 13: lm-evaluation-harness minerva_math, PRM800K, Qwen2.5-Math / simpleRL kinds, common
post-processing kinds, and the failure kinds the issue lists). Locked part: tests/data/
grader_locked.jsonl, written before the issue-13 changes from other sources and only scored
(its errors are listed only with --show-locked-errors; do not tune on them).

`expected` is our verdict (equal to the source's except where a note says why). A
"completion" case gives each grader the raw text to extract from; an "answer" case gives
math-verify `$...$`-wrapped strings (its best input) and us the bare answer. Prints accuracy,
false positives (wrong answer accepted), false negatives, cases/s and the speed ratio. Both
sides single-process; math-verify with its default (signal) timeouts, ours with its worker
processes started before timing (a one-off ~1 s cost, reported separately).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from aimo3_recipe.grader.cases import grade_case as ours_grade
from aimo3_recipe.grader.cases import load_cases

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
PARTS = {  # part -> case files
    "dev": ["grader_cases.jsonl", "grader_dev.jsonl"],
    "locked": ["grader_locked.jsonl"],
}


def _wrap(s: str) -> str:
    return s if ("$" in s or "\\(" in s or "\\[" in s or "\\boxed" in s) else f"${s}$"


def mathverify_grade(case: dict) -> bool:
    from math_verify import parse, verify

    pred = case["pred"] if case["mode"] == "completion" else _wrap(case["pred"])
    ref = case["ref"] if case["ref_mode"] == "completion" else _wrap(case["ref"])
    try:
        return bool(verify(parse(ref), parse(pred)))
    except Exception:
        return False


def score(name: str, fn, cases: list[dict]) -> dict:
    t0 = time.perf_counter()
    verdicts = [fn(c) for c in cases]
    dt = time.perf_counter() - t0
    fp = [c for c, v in zip(cases, verdicts) if v and not c["expected"]]
    fn_ = [c for c, v in zip(cases, verdicts) if not v and c["expected"]]
    n = len(cases)
    return {
        "name": name,
        "n": n,
        "accuracy": 1 - (len(fp) + len(fn_)) / n,
        "fp": fp,
        "fn": fn_,
        "seconds": dt,
        "cases_per_s": n / dt,
        "verdicts": verdicts,
    }


def _part_cases(part: str) -> list[dict]:
    cases = []
    for name in PARTS[part]:
        if (DATA / name).is_file():
            cases += [dict(c, file=name) for c in load_cases(DATA / name)]
    return cases


def _print_errors(r: dict) -> None:
    for kind in ("fp", "fn"):
        for c in r[kind]:
            print(f"[{r['name']} {kind.upper()}] {c['file']}#{c['id']} {c['source']} "
                  f"pred={c['pred'][:120]!r} ref={c['ref'][:80]!r} {c['note']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--shared-data",
        default=str(REPO.parent / "shared" / "data"),
        help="folder with math500.jsonl (skipped when missing)",
    )
    ap.add_argument("--probe", type=int, default=400,
                    help="random answer pairs for the false-positive probe (0: skip)")
    ap.add_argument("--show-errors", action="store_true",
                    help="list every FP/FN of both graders on the development part")
    ap.add_argument("--show-locked-errors", action="store_true",
                    help="list the locked part's errors too (reporting only: never tune on them)")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    from aimo3_recipe.grader import warm_up

    t0 = time.perf_counter()
    warm_up(1)
    startup = time.perf_counter() - t0
    import math_verify  # noqa: F401  (import cost outside the timing, as for ours)

    print(f"{'part':<7} {'grader':<12} {'n':>4} {'accuracy':>8} {'FP':>4} {'FN':>4} "
          f"{'seconds':>8} {'cases/s':>9}")
    scored: dict[str, tuple[list[dict], list[dict]]] = {}
    for part in PARTS:
        cases = _part_cases(part)
        if not cases:
            continue
        results = [score("ours", ours_grade, cases), score("math-verify", mathverify_grade, cases)]
        scored[part] = (cases, results)
        for r in results:
            print(f"{part:<7} {r['name']:<12} {r['n']:>4} {r['accuracy']:>8.3f} {len(r['fp']):>4} "
                  f"{len(r['fn']):>4} {r['seconds']:>8.2f} {r['cases_per_s']:>9.1f}")
        ratio = results[0]["cases_per_s"] / results[1]["cases_per_s"]
        print(f"{part:<7} speed ratio (ours / math-verify): {ratio:.1f}x")
    total = [sum(res[i]["seconds"] for _, res in scored.values()) for i in (0, 1)]
    n_all = sum(len(c) for c, _ in scored.values())
    print(f"all {n_all} cases: speed ratio {(n_all / total[0]) / (n_all / total[1]):.1f}x "
          f"(our worker start-up, once: {startup:.2f} s)")
    by_source: dict[tuple[str, str], list[int]] = {}
    for part, (cases, results) in scored.items():
        for c, a, b in zip(cases, results[0]["verdicts"], results[1]["verdicts"]):
            row = by_source.setdefault((part, c["source"].split("/")[0]), [0, 0, 0])
            row[0] += 1
            row[1] += a == c["expected"]
            row[2] += b == c["expected"]
    print(f"{'part':<7} {'source':<16} {'n':>4} {'ours':>6} {'math-verify':>11}")
    for (part, src), (n, a, b) in sorted(by_source.items()):
        print(f"{part:<7} {src:<16} {n:>4} {a / n:>6.3f} {b / n:>11.3f}")
    math500 = Path(args.shared_data) / "math500.jsonl"
    if (
        math500.is_file()
    ):  # real positives: the reference solution's final answer vs the answer field
        rows = [json.loads(x) for x in math500.read_text().splitlines() if x.strip()]
        pos = [
            {
                "pred": r["solution"],
                "ref": r["answer"],
                "mode": "completion",
                "ref_mode": "answer",
                "aimo": False,
                "problem": None,
                "expected": True,
                "id": i,
                "source": "math500",
                "note": "",
            }
            for i, r in enumerate(rows)
        ]
        res = [score("ours", ours_grade, pos), score("math-verify", mathverify_grade, pos)]
        print(
            f"MATH-500 solutions vs answer field ({len(pos)} positives): "
            + ", ".join(
                f"{r['name']} {len(pos) - len(r['fn'])}/{len(pos)} in {r['seconds']:.2f} s"
                for r in res
            )
            + f"; speed ratio {res[0]['cases_per_s'] / res[1]['cases_per_s']:.1f}x"
        )
    train = Path(args.shared_data) / "math_train7500_answers_only.jsonl"
    if train.is_file() and args.probe > 0:  # false-positive probe: different answers of one shape
        import random

        answers = [json.loads(x)["answer"] for x in train.read_text().splitlines() if x.strip()]
        groups: dict[tuple, list[str]] = {}
        for a in answers:
            if a:
                groups.setdefault((len(a) // 3, a[:1].isdigit(), "\\" in a), []).append(a)
        rng = random.Random(0)
        shapes = [g for g in groups.values() if len(g) > 1]
        pairs = []
        while len(pairs) < args.probe:
            a, b = rng.sample(rng.choice(shapes), 2)
            if a != b:
                pairs.append({"pred": a, "ref": b, "mode": "answer", "ref_mode": "answer",
                              "aimo": False, "problem": None, "expected": False, "id": len(pairs),
                              "source": "probe", "note": ""})
        res = [score("ours", ours_grade, pairs), score("math-verify", mathverify_grade, pairs)]
        print(f"FP probe, {len(pairs)} pairs of different MATH-train answers of similar shape "
              "(an 'equal' verdict is a false positive unless the two are truly equal):")
        for r in res:
            print(f"  {r['name']}: {len(r['fp'])} judged equal, {r['cases_per_s']:.0f} pairs/s: "
                  + "; ".join(f"{c['pred']!r} = {c['ref']!r}" for c in r["fp"][:10]))
    if args.show_errors and "dev" in scored:
        for r in scored["dev"][1]:
            _print_errors(r)
    if args.show_locked_errors and "locked" in scored:
        for r in scored["locked"][1]:
            _print_errors(r)


if __name__ == "__main__":
    main()
