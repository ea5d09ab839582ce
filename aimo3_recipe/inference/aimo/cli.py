"""`aimo3 kaggle ...`: the AIMO3 solver's commands (thin: each builds a config and calls the
library).

    aimo3 kaggle gateway --problems reference.csv --out-dir runs/aimo [--runs 2]
                         [--shuffle-seed 0] [SolverConfig flags, e.g. --num-attempts 8]
    aimo3 kaggle predict --problem "What is 12 + 35?" [SolverConfig flags]
    aimo3 kaggle serve --problems reference.csv     (inside the Kaggle notebook)
    aimo3 kaggle bundle --out-dir outputs/kaggle_bundle --requirements "vllm==0.11.0,polars"
    aimo3 kaggle replay runs/aimo/run0/problems.jsonl [eval/samples.jsonl ...]
                        --rule "k4:early_stop_k=4" --rule "none:early_stop_k=0"
                        [--total-s 17400] [--reps 200] [--plot curve.png]

`replay` re-runs logged attempts under each `--rule` ("name:field=value,...", fields of
replay.ReplayRule) and prints a table comparing them; `--plot` draws expected score against
the total budget (`--budgets`, default 25%..150% of --total-s).

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
    bd = sub.add_parser("bundle", help="write the offline Kaggle bundle and notebook")
    from aimo3_recipe.inference.aimo.bundle import BundleConfig

    add_dataclass_args(bd, BundleConfig)
    rp = sub.add_parser("replay", help="replay logged attempts under other rules (CPU)")
    rp.add_argument("logs", nargs="+", help="solver problems.jsonl and/or evaluation samples.jsonl")
    rp.add_argument("--rule", action="append", default=None,
                    help='"name:field=value,..." (ReplayRule fields); repeat to compare')
    rp.add_argument("--total-s", type=float, default=17400.0, help="every rule's total budget")
    rp.add_argument("--num-problems", type=int, default=None, help="default: the logs' count")
    rp.add_argument("--reps", type=int, default=200, help="repetitions (random orders, draws)")
    rp.add_argument("--runs", type=int, default=2, help="runs per repetition (private: 2)")
    rp.add_argument("--seed", type=int, default=0, help="random seed of the replay")
    rp.add_argument("--resample", default="auto", help="auto | subset | bootstrap | none")
    rp.add_argument("--tie-score", default="expected", help="expected | first_seen")
    rp.add_argument("--answers", default=None, help="CSV id,problem,answer for logs without refs")
    rp.add_argument("--sec-per-token", type=float, default=0.01,
                    help="samples.jsonl: seconds per token (it has no times)")
    rp.add_argument("--plot", default=None, help="PNG of expected score against total budget")
    rp.add_argument("--budgets", default=None, help="comma-separated totals for --plot (s)")
    return parser


def _replay(args: argparse.Namespace) -> None:
    from aimo3_recipe.inference.aimo.gateway import read_problems
    from aimo3_recipe.inference.aimo.replay import (
        budget_curve,
        format_table,
        load_logs,
        parse_rule,
        plot_budget_curve,
        replay,
    )

    answers = None
    if args.answers:
        answers = {p.id: p.answer for p in read_problems(args.answers) if p.answer is not None}
    problems = load_logs(args.logs, answers=answers, sec_per_token=args.sec_per_token)
    defaults = {"total_s": args.total_s, "num_problems": args.num_problems or len(problems)}
    rules = [parse_rule(spec, **defaults) for spec in (args.rule or ["default:"])]
    kw = {"reps": args.reps, "runs": args.runs, "seed": args.seed, "resample": args.resample,
          "tie_score": args.tie_score}
    print(f"{len(problems)} problems, {sum(len(p.attempts) for p in problems)} logged attempts,"
          f" {args.reps} repetitions x {args.runs} runs")
    print(format_table([replay(problems, r, **kw) for r in rules]))
    if args.plot:
        budgets = ([float(x) for x in args.budgets.split(",")] if args.budgets
                   else [args.total_s * f for f in (0.25, 0.5, 0.75, 1.0, 1.5)])
        curve = budget_curve(problems, rules, budgets, **kw)
        print(f"plot: {plot_budget_curve(curve, budgets, args.plot, len(problems))}")


def cli(argv: list[str] | None = None) -> int:
    from aimo3_recipe.config import config_from_args, given_fields
    from aimo3_recipe.exceptions import Aimo3Error

    args = _parser().parse_args(argv)
    try:
        if args.command == "replay":
            _replay(args)
            return 0
        if args.command == "bundle":
            from aimo3_recipe.inference.aimo.bundle import BundleConfig, build_bundle

            manifest = build_bundle(config_from_args(BundleConfig, args))
            print(json.dumps({k: manifest[k] for k in ("own_wheel", "wheels",
                                                        "kaggle_model_path", "bytes")}, indent=2))
            print(f"bundle: {manifest['config']['out_dir']} (upload it as a Kaggle dataset)")
            return 0
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
            from aimo3_recipe.inference.aimo.solver import AIMOSolver, predict_function

            serve_kaggle(predict_function(AIMOSolver(config)), args.problems)
    except Aimo3Error as e:
        print(f"aimo3 kaggle: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
