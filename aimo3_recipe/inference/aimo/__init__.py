"""The AIMO3 competition solver (`aimo3 kaggle ...`).

    solver = AIMOSolver(SolverConfig(model_name_or_path="default", log_dir="runs/aimo"))
    predict = predict_function(solver)  # a plain function named `predict`, as Kaggle's server
    predict(id_, problem)               # wants it: one-row Series in, id/answer frame out

One concept per module: `budget` (clock, time rule, banking, hard stop), `answers` (0..99999
normalisation), `prompts` (ChatML / Harmony with the answer-range rule), `attempts` (N
concurrent TIR attempts with early stop and cancellation, then selection), `log` (the JSONL
log the replay simulator reads), `solver` (predict, lazy model load), `gateway` (the local
gateway over a CSV, scoring, two-run penalised score), `cli`.
"""

from aimo3_recipe.inference.aimo.answers import AIMOAnswer, normalise_answer
from aimo3_recipe.inference.aimo.budget import (
    MonotonicClock,
    SimClock,
    TimeKeeper,
    TimeRule,
    problem_budget,
)
from aimo3_recipe.inference.aimo.config import SolverConfig
from aimo3_recipe.inference.aimo.gateway import (
    check_endpoint,
    penalised_score,
    run_local_gateway,
    serve_kaggle,
)
from aimo3_recipe.inference.aimo.solver import AIMOSolver, predict_function

__all__ = [
    "AIMOAnswer",
    "AIMOSolver",
    "MonotonicClock",
    "SimClock",
    "SolverConfig",
    "TimeKeeper",
    "TimeRule",
    "check_endpoint",
    "normalise_answer",
    "penalised_score",
    "predict_function",
    "problem_budget",
    "run_local_gateway",
    "serve_kaggle",
]
