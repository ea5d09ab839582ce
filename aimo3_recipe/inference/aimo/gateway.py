"""A local stand-in for Kaggle's gateway: run `predict` over a CSV, write submission.parquet,
score it, and the two-run penalised score.

The CSV has `id,problem` and optionally `answer`. Problems go to `predict` one at a time as
one-row Series, one per column as Kaggle's gateway sends them (the answer too, when the file
has one; polars when installed, as on Kaggle; else pandas), in the file's order or
shuffled (the public set comes shuffled). `submission.parquet` gets `id,answer` in the
order answered. With answers, the score is the number right; with `runs=2` the whole set is
run twice by two fresh solvers (the private set is run twice) and each problem scores 1
(both runs right), 0.5 (one) or 0, the competition's penalised accuracy.

`serve_kaggle(predict, csv)` hands `predict` to `kaggle_evaluation` when it is importable
(the competition image): `.serve()` under KAGGLE_IS_COMPETITION_RERUN, else its own
`.run_local_gateway((csv,))`. Both this stand-in and `serve_kaggle` first apply the rules of
Kaggle's server (`check_endpoint`), so what passes here also starts there.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FunctionType
from typing import Any

from aimo3_recipe.exceptions import ConfigError, DatasetError, MissingDependencyError

ENDPOINT = "predict"  # the endpoint name AIMO3's gateway calls


def check_endpoint(predict: Any) -> None:
    """Kaggle's rules for an endpoint listener (`kaggle_evaluation.core.relay.define_server`):
    a plain function (a bound method, a partial or a callable object is refused), not a
    lambda, and named like the endpoint the gateway calls, `predict` (the server finds it by
    `__name__`). Raises ConfigError with the fix."""
    fix = ("wrap the solver in a plain function named `predict` "
           "(`aimo3_recipe.inference.aimo.predict_function(solver)`, or `def predict(id_, problem): ...`)")
    if not isinstance(predict, FunctionType):
        raise ConfigError(f"Kaggle's server takes only plain functions as endpoint listeners; "
                          f"got {type(predict)}: {fix}")
    if predict.__name__ != ENDPOINT:
        raise ConfigError(f"Kaggle's gateway calls the endpoint {ENDPOINT!r} and finds it by "
                          f"the function's name; got a function named "
                          f"{predict.__name__!r}: {fix}")


@dataclass
class Problem:
    id: str
    problem: str
    answer: int | None = None  # the reference answer, when the CSV has one


def read_problems(path: str | Path) -> list[Problem]:
    """Rows of a CSV with `id,problem[,answer]` (answers must be integers)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"problems CSV not found: {p}")
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"id", "problem"} <= cols:
            raise DatasetError(f"{p} needs columns id,problem[,answer]; got {sorted(cols)}")
        out = []
        for row in reader:
            ans = (row.get("answer") or "").strip()
            try:
                ref = int(ans) if ans else None
            except ValueError:
                raise DatasetError(f"{p}: answer of id {row['id']!r} is not an integer: "
                                   f"{ans!r}") from None
            out.append(Problem(str(row["id"]), row["problem"], ref))
    return out


def _series(name: str, value: Any) -> Any:
    """A one-row Series as Kaggle sends it (polars), else pandas."""
    try:
        import polars as pl

        return pl.Series(name, [value])
    except ImportError:
        import pandas as pd

        return pd.Series([value], name=name)


def _frame_answer(frame: Any) -> tuple[str, int]:
    """(id, answer) of predict's one-row frame, checked (polars or pandas)."""
    cols = list(frame.columns)
    if cols[:2] != ["id", "answer"] and set(cols) != {"id", "answer"}:
        raise ValueError(f"predict must return a frame with columns id, answer; got {cols}")
    if len(frame) != 1:
        raise ValueError(f"predict must return one row; got {len(frame)}")
    rows = frame.to_dicts() if hasattr(frame, "to_dicts") else frame.to_dict("records")
    ans = int(rows[0]["answer"])
    if not 0 <= ans <= 99999:
        raise ValueError(f"predict returned answer {ans}, outside 0..99999")
    return str(rows[0]["id"]), ans


def penalised_score(correct_runs: list[list[bool]]) -> float:
    """Two-run scoring: per problem 1 (right in every run), 0.5 (in some), 0 (in none), summed.
    `correct_runs`: one list of per-problem booleans per run, same problem order."""
    if not correct_runs:
        return 0.0
    total = 0.0
    for per_problem in zip(*correct_runs):
        k = sum(per_problem)
        total += 1.0 if k == len(per_problem) else (0.5 if k else 0.0)
    return total


@dataclass
class GatewayReport:
    problems: int  # rows in the CSV
    runs: int  # times the set was run
    answers: list[dict[str, Any]]  # per run and problem: run, id, answer, reference, correct
    valid_answers: int  # answers that were integers in 0..99999 (all runs)
    seconds: list[float]  # wall seconds per run
    scores: list[int | None] = field(default_factory=list)  # right answers per run (None: no refs)
    penalised: float | None = None  # two-run score (runs == 2 with answers)
    submission: str = ""  # path of submission.parquet (the last run's)


def run_local_gateway(problems_csv: str | Path, make_predict: Callable[[int], Callable],
                      out_dir: str | Path, *, runs: int = 1, shuffle_seed: int | None = None,
                      after_run: Callable[[int, Callable], None] | None = None) -> GatewayReport:
    """Run `make_predict(run)` (a fresh predict per run) over the CSV `runs` times; write
    `out_dir/submission.parquet` (the last run) and `out_dir/gateway.json`. `after_run(run,
    predict)` is called after each run (the CLI closes the solver there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems = read_problems(problems_csv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seconds: list[float] = []
    correct_runs: list[list[bool]] = []
    has_refs = all(p.answer is not None for p in problems) and bool(problems)
    sub_path = out / "submission.parquet"
    for run in range(runs):
        order = list(problems)
        if shuffle_seed is not None:
            random.Random(shuffle_seed + run).shuffle(order)
        predict = make_predict(run)
        check_endpoint(predict)
        t0 = time.monotonic()
        got: dict[str, int] = {}
        answered: list[tuple[str, int]] = []
        for p in order:
            # every column of the CSV, as Kaggle's gateway sends them (a reference file's
            # answers too: a predict(id_, problem) without room for them fails there)
            cols = [_series("id", p.id), _series("problem", p.problem)]
            if p.answer is not None:
                cols.append(_series("answer", p.answer))
            pid, ans = _frame_answer(predict(*cols))
            if pid != p.id:
                raise ValueError(f"predict answered id {pid!r} for problem {p.id!r}")
            got[p.id] = ans
            answered.append((pid, ans))
        seconds.append(round(time.monotonic() - t0, 3))
        if after_run is not None:
            after_run(run, predict)
        pq.write_table(pa.table({"id": [a for a, _ in answered],
                                 "answer": pa.array([b for _, b in answered], pa.int64())}),
                       sub_path)
        correct = [got[p.id] == p.answer for p in problems] if has_refs else []
        correct_runs.append(correct)
        for p in problems:
            rows.append({"run": run, "id": p.id, "answer": got[p.id], "reference": p.answer,
                         "correct": (got[p.id] == p.answer) if p.answer is not None else None})
    report = GatewayReport(
        problems=len(problems), runs=runs, answers=rows,
        valid_answers=sum(0 <= r["answer"] <= 99999 for r in rows), seconds=seconds,
        scores=[sum(c) for c in correct_runs] if has_refs else [None] * runs,
        penalised=penalised_score(correct_runs) if has_refs and runs == 2 else None,
        submission=str(sub_path))
    (out / "gateway.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def serve_kaggle(predict: Callable, problems_csv: str | Path) -> None:
    """Kaggle's own server around `predict` (the competition image has `kaggle_evaluation`)."""
    try:
        from kaggle_evaluation import aimo_3_inference_server as server_mod  # type: ignore
    except ImportError as e:
        raise MissingDependencyError(
            f"`kaggle_evaluation` is not importable ({e}): it exists only in the competition "
            "notebook; run `aimo3 kaggle gateway` for the local stand-in") from e
    check_endpoint(predict)
    server = server_mod.AIMO3InferenceServer(predict)
    if os.getenv("KAGGLE_IS_COMPETITION_RERUN"):
        server.serve()
    else:
        server.run_local_gateway((str(problems_csv),))


def run_solver(config: Any, problems_csv: str | Path, out_dir: str | Path, *, runs: int = 1,
               shuffle_seed: int | None = None, engine: Any = None,
               clock: Any = None) -> tuple[GatewayReport, list[dict[str, Any]]]:
    """The local gateway over our solver: a fresh `AIMOSolver` per run (its own clock and
    log, `out_dir/run<k>/`), one engine shared by all runs (loaded once, by the first run's
    first problem, unless given). Returns the report and each run's solver summary."""
    from dataclasses import replace

    from aimo3_recipe.inference.aimo.solver import AIMOSolver, predict_function

    refs = {p.id: p.answer for p in read_problems(problems_csv) if p.answer is not None}
    solvers: list[AIMOSolver] = []
    summaries: list[dict[str, Any]] = []

    def make_predict(run: int) -> Callable:
        log_dir = str(Path(out_dir) / f"run{run}")
        shared = solvers[0].engine if solvers else engine
        solver = AIMOSolver(replace(config, log_dir=log_dir), shared, clock=clock)
        solver.references = dict(refs)  # type: ignore[arg-type]
        solvers.append(solver)
        return predict_function(solver)

    def after_run(run: int, predict: Callable) -> None:
        summaries.append(solvers[run].close())

    report = run_local_gateway(problems_csv, make_predict, out_dir, runs=runs,
                               shuffle_seed=shuffle_seed, after_run=after_run)
    return report, summaries
