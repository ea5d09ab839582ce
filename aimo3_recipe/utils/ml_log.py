"""Run logging used by every stage: one metrics dict per step, many sinks.

`metrics.jsonl` is always written (one JSON object per line, namespaced keys such as
`train/loss`, `eval/accuracy`, `time/step`, plus `step`); TensorBoard and W&B are optional
sinks behind the same `log()` call. The resolved config is saved as `config.json` beside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aimo3_recipe.exceptions import ConfigError, require

T = TypeVar("T")
SINKS = ("jsonl", "tensorboard", "wandb", "none")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible rather than invalid
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def save_config(config: Any, output_dir: str | Path, filename: str = "config.json") -> Path:
    """Write the resolved config (dataclass or dict) as JSON beside the run's outputs."""
    path = Path(output_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(config), indent=2, sort_keys=True) + "\n")
    return path


def _parse_report_to(report_to: str | Iterable[str] | None) -> list[str]:
    if report_to is None:
        return []
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    sinks = [s.strip().lower() for item in items for s in item.split(",") if s.strip()]
    for s in sinks:
        if s not in SINKS:
            raise ConfigError(f"report_to must be a comma list of {SINKS}; got {s!r}")
    return [s for s in sinks if s not in ("none", "jsonl")]


class MetricsLogger:
    """Append metrics to `<log_dir>/metrics.jsonl` and any optional sinks.

    `resume=True` keeps the existing file (a resumed run appends after its last step).
    """

    def __init__(self, log_dir: str | Path, report_to: str | Iterable[str] | None = None,
                 config: Any = None, run_name: str | None = None, project: str = "aimo3-recipe",
                 resume: bool = False):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / "metrics.jsonl"
        if not resume and self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a")
        self._tb = None
        self._wandb = None
        if config is not None:
            save_config(config, self.log_dir)
        for sink in _parse_report_to(report_to):
            if sink == "tensorboard":
                tb = require("torch.utils.tensorboard", "tensorboard", "report_to=tensorboard")
                self._tb = tb.SummaryWriter(log_dir=str(self.log_dir / "tensorboard"))
            elif sink == "wandb":
                wandb = require("wandb", "wandb", "report_to=wandb")
                self._wandb = wandb.init(project=project, name=run_name,
                                         config=_jsonable(config) if config is not None else None,
                                         dir=str(self.log_dir))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record one step's metrics in every sink."""
        row = {"step": step, "time": time.time(), **_jsonable(metrics)}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(_jsonable(metrics), step=step)

    def log_samples(self, name: str, rows: list[dict[str, Any]], step: int) -> None:
        """Log a table of samples to W&B when enabled (jsonl sample files are the caller's)."""
        if self._wandb is None or not rows:
            return
        import wandb

        columns = sorted({k for r in rows for k in r})
        table = wandb.Table(columns=columns,
                            data=[[_jsonable(r.get(c)) for c in columns] for r in rows])
        self._wandb.log({name: table}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl (or a run folder holding one) back as a list of dicts."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None,
             disable: bool | None = None) -> Iterator[T]:
    """A tqdm progress bar (quiet when stderr is not a terminal unless AIMO3_PROGRESS=1)."""
    import os
    import sys

    from tqdm.auto import tqdm

    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("AIMO3_PROGRESS") == "1")
    return iter(tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True))
