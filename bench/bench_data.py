"""Data layer measurements, each against a named baseline measured in the same run.

    python bench/bench_data.py [--data-dir ../shared/data]

1. Decontamination (our token 8-gram overlap with a same-numbers check) vs the baseline
   "exact match after normalisation": recall on MATH-500 problems inside MATH test (500
   copies), recall on all 500 MATH-500 problems lightly reworded, and rows flagged in MATH
   train (7498 rows that should hold almost no MATH-500 copies: flags there are mostly false
   positives, i.e. MATH's template siblings).
2. Synthetic generator throughput (items/s) for 10,000 items.
3. Near-duplicate removal (datasketch MinHash LSH) time on MATH train.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from aimo3_recipe.data.datasets import load_math_dataset
    from aimo3_recipe.data.preprocessing import decontaminate, dedup_near, problem_key
    from aimo3_recipe.data.records import MathRecord
    from aimo3_recipe.data.synthetic import generate_synthetic
    from aimo3_recipe.testing import reword_lightly as reword  # the test's rewording

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    d = args.data_dir

    math500 = load_math_dataset("math500", data_dir=d)
    bench = {"math500": [r.problem for r in math500]}
    math_test = load_math_dataset("math", data_dir=d)
    math_train = load_math_dataset("math", split="train", data_dir=d)
    reworded = [MathRecord(reword(r.problem), "", r.answer, "reworded") for r in math500]

    exact_keys = {problem_key(p) for p in bench["math500"]}

    def exact(records):
        return sum(problem_key(r.problem) in exact_keys for r in records)

    print("decontamination vs MATH-500          exact-match baseline   ours (8-gram overlap)")
    for label, records in (("MATH test 5000 (500 copies inside)", math_test),
                           ("MATH-500 reworded (500)", reworded),
                           ("MATH train 7498 (flags ~ false +)", math_train)):
        t = time.perf_counter()
        _, removed = decontaminate(records, bench)
        dt = time.perf_counter() - t
        print(f"  {label:<36} {exact(records):>10}   {removed['math500']:>14}  ({dt:.1f} s)")

    t = time.perf_counter()
    items = generate_synthetic(10_000, seed=0)
    dt = time.perf_counter() - t
    print(f"synthetic: {len(items)} items in {dt:.2f} s ({len(items) / dt:,.0f} items/s)")

    t = time.perf_counter()
    _, near = dedup_near(math_train)
    print(f"near-dup (MinHash LSH, Jaccard>=0.8) on MATH train: {near} removed in "
          f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
