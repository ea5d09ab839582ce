import json
from dataclasses import dataclass

import pytest

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.utils.ml_log import MetricsLogger, read_metrics


@dataclass
class _Cfg:
    lr: float = 0.1
    name: str = "x"


def test_metrics_jsonl_and_config(tmp_path):
    with MetricsLogger(tmp_path, config=_Cfg()) as log:
        log.log({"train/loss": 2.5, "train/lr": 1e-3}, step=1)
        log.log({"train/loss": float("nan"), "eval/accuracy": 0.5}, step=2)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["train/loss"] == 2.5 and rows[1]["eval/accuracy"] == 0.5
    assert rows[1]["train/loss"] == "nan"  # still valid JSON
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.1, "name": "x"}


def test_resume_appends_and_fresh_run_truncates(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log({"a/b": 1}, step=1)
    with MetricsLogger(tmp_path, resume=True) as log:
        log.log({"a/b": 2}, step=2)
    assert [r["a/b"] for r in read_metrics(tmp_path)] == [1, 2]
    with MetricsLogger(tmp_path) as log:
        log.log({"a/b": 3}, step=1)
    assert [r["a/b"] for r in read_metrics(tmp_path)] == [3]


def test_tensorboard_sink(tmp_path):
    pytest.importorskip("tensorboard")
    with MetricsLogger(tmp_path, report_to="tensorboard") as log:
        log.log({"train/loss": 1.0}, step=1)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_sink_name():
    with pytest.raises(ConfigError, match="report_to"):
        MetricsLogger("/tmp/unused-aimo3", report_to="mlflow")
