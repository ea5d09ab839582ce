"""What Kaggle's server takes as `predict` (issue 23 item 0).

Kaggle's `kaggle_evaluation.core.relay.define_server` refuses anything but a plain function
("Endpoint listeners passed to `serve` must be functions, got <class 'method'>") and routes
the gateway's "predict" calls by `__name__`. `aimo3 kaggle serve` handed it the bound method
`AIMOSolver(config).predict`, and the local stand-in did not check, so no test saw it.

The last test runs `serve_kaggle` against the real `kaggle_evaluation` package when
KAGGLE_EVALUATION_DIR names a folder holding it (the package is Kaggle's and cannot be
committed here); it is skipped otherwise.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from types import FunctionType

import pytest

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.aimo import (
    AIMOSolver,
    SimClock,
    SolverConfig,
    check_endpoint,
    predict_function,
    run_local_gateway,
)
from aimo3_recipe.testing import ClockedScriptEngine


def _csv(path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "problem", "answer"])
        w.writeheader()
        w.writerow({"id": "k1", "problem": "K1: what is 5?", "answer": "5"})
    return path


def _solver() -> AIMOSolver:
    clock = SimClock()
    engine = ClockedScriptEngine(clock, {"K1": [[("So \\boxed{5}.", 2)]] * 2})
    cfg = SolverConfig(total_s=100.0, num_problems=1, min_s=0.0, reserve_s=0.0,
                       num_attempts=2, early_stop_k=2, max_tokens=50, log_text=False)
    return AIMOSolver(cfg, engine, clock=clock)


def test_check_endpoint_applies_kaggles_rules():
    solver = _solver()
    with pytest.raises(ConfigError, match="plain functions.*method"):
        check_endpoint(solver.predict)  # what `aimo3 kaggle serve` handed over before

    def answer(id_, problem):
        return solver.predict(id_, problem)

    with pytest.raises(ConfigError, match="named 'answer'"):
        check_endpoint(answer)
    with pytest.raises(ConfigError, match="named '<lambda>'"):
        check_endpoint(lambda id_, problem: None)
    predict = predict_function(solver)
    assert isinstance(predict, FunctionType) and predict.__name__ == "predict"
    check_endpoint(predict)


def test_local_gateway_refuses_a_bound_method(tmp_path):
    """The stand-in enforces what Kaggle's server enforces (it ran the bound method before)."""
    problems = _csv(tmp_path / "p.csv")
    solver = _solver()
    with pytest.raises(ConfigError, match="plain functions"):
        run_local_gateway(problems, lambda run: solver.predict, tmp_path / "out")
    report = run_local_gateway(problems, lambda run: predict_function(_solver()),
                               tmp_path / "out")
    assert report.answers[0]["answer"] == 5


def _stand_in_kaggle(root: Path) -> None:
    """A stand-in `kaggle_evaluation` with the one rule of Kaggle's server that matters here
    (written for this test, not Kaggle's code): it records the listener it was given."""
    pkg = root / "kaggle_evaluation"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "aimo_3_inference_server.py").write_text(
        "from types import FunctionType\n"
        "GOT = []\n"
        "class AIMO3InferenceServer:\n"
        "    def __init__(self, *listeners):\n"
        "        for f in listeners:\n"
        "            if not isinstance(f, FunctionType):\n"
        "                raise ValueError(f'must be functions, got {type(f)}')\n"
        "        GOT.extend(listeners)\n"
        "    def run_local_gateway(self, paths):\n"
        "        GOT.append(paths)\n")


def test_cli_serve_hands_kaggle_a_function_named_predict(tmp_path, monkeypatch):
    from aimo3_recipe.cli import main

    _stand_in_kaggle(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)
    problems = _csv(tmp_path / "p.csv")
    rc = main(["kaggle", "serve", "--problems", str(problems), "--use-vllm", "false"])
    assert rc == 0
    from kaggle_evaluation import aimo_3_inference_server as stand_in  # type: ignore

    listener, paths = stand_in.GOT
    assert isinstance(listener, FunctionType) and listener.__name__ == "predict"
    assert paths == (str(problems),)
    sys.modules.pop("kaggle_evaluation.aimo_3_inference_server", None)
    sys.modules.pop("kaggle_evaluation", None)


@pytest.mark.skipif(not os.environ.get("KAGGLE_EVALUATION_DIR"),
                    reason="set KAGGLE_EVALUATION_DIR to a folder holding Kaggle's public "
                           "kaggle_evaluation package (it cannot be committed here)")
def test_serve_under_kaggles_own_server(tmp_path, monkeypatch):
    """Kaggle's real server and local gateway (gRPC) around predict_function(solver)."""
    from aimo3_recipe.inference.aimo.gateway import serve_kaggle

    root = Path(os.environ["KAGGLE_EVALUATION_DIR"])
    monkeypatch.syspath_prepend(str(root / "kaggle_evaluation"))  # it imports aimo_3_gateway
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)
    monkeypatch.chdir(tmp_path)  # its gateway writes submission.parquet into the cwd
    problems = _csv(tmp_path / "p.csv")
    solver = _solver()
    with pytest.raises(ValueError, match="must be functions"):  # Kaggle's own refusal
        _server_of(solver.predict)
    serve_kaggle(predict_function(solver), problems)
    import polars as pl

    sub = pl.read_parquet(tmp_path / "submission.parquet").to_dicts()
    assert sub == [{"id": "k1", "answer": 5}]
    assert solver.records and solver.records[0].answer == 5


def _server_of(listener):
    """Kaggle's own server class around `listener` (its define_server applies its rules)."""
    from kaggle_evaluation import aimo_3_inference_server as server_mod  # type: ignore

    return server_mod.AIMO3InferenceServer(listener)
