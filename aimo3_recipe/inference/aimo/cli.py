"""`aimo3 kaggle ...`: the AIMO3 solver's commands (thin: each builds a config and calls the
library).

    aimo3 kaggle gateway --problems reference.csv --out-dir runs/aimo [--runs 2]
                         [--shuffle-seed 0] [SolverConfig flags, e.g. --num-attempts 8]
    aimo3 kaggle predict --problem "What is 12 + 35?" [SolverConfig flags]
    aimo3 kaggle serve --problems reference.csv     (inside the Kaggle notebook)

Every SolverConfig field is a flag (`--total-s`, `--early-stop-k`, `--selection`, ...) and
`--config x.yaml` loads a saved set of them. `gateway` sets `--num-problems` to the CSV's
size unless given, so the time rule plans for the problems it will really get.
"""

from __future__ import annotations

import argparse
import json
import sys

from aimo3_recipe.inference.aimo.config import SolverConfig


def _parser() -> argparse.ArgumentParser:
    from aimo3_recipe.config import add_dataclass_args

    parser = argparse.ArgumentParser(prog="aimo3 kaggle",
                                     description="The AIMO3 competition solver.")
    sub = parser.add_subparsers(dest="command", required=True)
    gw = sub.add_parser("gateway", help="run predict over a CSV, write submission.parquet, score")
    gw.add_argument("--problems", required=True, help="CSV with id,problem[,answer]")
    gw.add_argument("--out-dir", default="outputs/aimo", help="submission, logs, gateway.json")
    gw.add_argument("--runs", type=int, default=1, help="2: the private set's two runs")
    gw.add_argument("--shuffle-seed", type=int, default=None, help="shuffle the problem order")
    pr = sub.add_parser("predict", help="solve one problem, print the answer and its record")
    pr.add_argument("--problem", required=True, help="the problem text")
    sv = sub.add_parser("serve", help="Kaggle's AIMO3InferenceServer around predict")
    sv.add_argument("--problems", required=True, help="CSV for its local gateway (not rerun)")
    for p in (gw, pr, sv):
        p.add_argument("--config", default=None, help="YAML file of SolverConfig fields")
        add_dataclass_args(p, SolverConfig)
    return parser


def cli(argv: list[str] | None = None) -> int:
    from aimo3_recipe.config import config_from_args, given_fields
    from aimo3_recipe.exceptions import Aimo3Error

    args = _parser().parse_args(argv)
    try:
        config = config_from_args(SolverConfig, args, args.config)
        if args.command == "gateway":
            from dataclasses import replace

            from aimo3_recipe.inference.aimo.gateway import read_problems, run_solver

            if "num_problems" not in given_fields(SolverConfig, args, args.config):
                config = replace(config, num_problems=len(read_problems(args.problems)))
            report, summaries = run_solver(config, args.problems, args.out_dir, runs=args.runs,
                                           shuffle_seed=args.shuffle_seed)
            print(json.dumps({"scores": report.scores, "penalised": report.penalised,
                              "valid_answers": report.valid_answers,
                              "seconds": report.seconds, "submission": report.submission,
                              "runs": summaries}, indent=2))
        elif args.command == "predict":
            from aimo3_recipe.inference.aimo.solver import AIMOSolver

            solver = AIMOSolver(config)
            rec = solver.solve(args.problem, "cli")
            solver.close()
            print(f"answer: {rec.answer}  ({rec.selection.get('reason')}; stop: "
                  f"{rec.stop_reason}; {rec.used_s:.1f}s of {rec.budget_s:.0f}s"
                  + ("; fallback" if rec.fallback else "") + ")")
        else:
            from aimo3_recipe.inference.aimo.gateway import serve_kaggle
            from aimo3_recipe.inference.aimo.solver import AIMOSolver

            serve_kaggle(AIMOSolver(config).predict, args.problems)
    except Aimo3Error as e:
        print(f"aimo3 kaggle: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
