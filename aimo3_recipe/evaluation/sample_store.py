"""`samples.jsonl`: every completion of an evaluation, written as it is produced, and the
state an interrupted evaluation resumes from.

One JSON object per completion. The first line is a header holding the run key (model,
benchmark, sampling settings, seed...); a later run with a different key refuses to resume
rather than mix samples of two settings. A problem's completions of one pass are written
together and flushed, so after a kill the file holds whole problems plus at most one torn
line, which opening the store drops (it says how many lines it dropped).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ConfigError

logger = logging.getLogger(__name__)


class SampleStore:
    """Append-only store of completion records keyed by (pass kind, problem index)."""

    def __init__(self, path: str | Path, run_key: dict[str, Any], *, resume: bool = True):
        self.path = Path(path)
        self.run_key = run_key
        self.records: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.num_resumed = 0
        self.dropped_lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        else:
            self.path.write_text(json.dumps({"header": run_key}, sort_keys=True) + "\n")
        self._file = self.path.open("a")

    def _load(self) -> None:
        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0]).get("header")
        except (json.JSONDecodeError, IndexError, AttributeError):
            header = None
        if header != self.run_key:
            diff = sorted(k for k in set(self.run_key) | set(header or {})
                          if (header or {}).get(k) != self.run_key.get(k))
            raise ConfigError(
                f"{self.path} holds samples of a different evaluation (differs in {diff}). "
                f"Use another --output-dir, or --resume false to start this one afresh.")
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for line in lines[1:]:
            try:
                rec = json.loads(line)
                groups[(rec["kind"], int(rec["problem_index"]))].append(rec)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                self.dropped_lines += 1
        for key, recs in groups.items():
            expected = recs[0].get("group_size", len(recs))
            if len(recs) == expected:
                self.records[key] = sorted(recs, key=lambda r: r.get("sample_index", 0))
            else:  # a group cut by the kill: regenerated (same batch, same seed -> same text)
                self.dropped_lines += len(recs)
        self.num_resumed = sum(len(r) for r in self.records.values())
        self._rewrite()  # without torn lines, so the file stays valid jsonl
        if self.dropped_lines:
            logger.warning("%s: dropped %d incomplete line(s) left by an interrupted run; "
                           "those problems are generated again", self.path, self.dropped_lines)

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        with tmp.open("w") as f:
            f.write(json.dumps({"header": self.run_key}, sort_keys=True) + "\n")
            for recs in self.records.values():
                for rec in recs:
                    f.write(json.dumps(rec) + "\n")
        tmp.replace(self.path)  # atomic: a kill now leaves the old or the new file, whole

    def rewrite(self) -> None:
        """Write every record again (after records were changed in place, e.g. regraded)."""
        self._file.close()
        self._rewrite()
        self._file = self.path.open("a")

    def has(self, kind: str, problem_index: int) -> bool:
        return (kind, problem_index) in self.records

    def get(self, kind: str, problem_index: int) -> list[dict[str, Any]]:
        return self.records.get((kind, problem_index), [])

    def add(self, kind: str, problem_index: int, records: list[dict[str, Any]]) -> None:
        """Write one problem's records of one pass (all at once, then flush)."""
        for i, rec in enumerate(records):
            rec.update(kind=kind, problem_index=problem_index, group_size=len(records),
                       sample_index=rec.get("sample_index", i))
            self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        self.records[(kind, problem_index)] = records

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
