"""RL checkpoints: `<run>/checkpoints/step-N/` holds what the backend saves (weights or
adapter and optimizer state) and `state.json` ({"step": N}); a folder without state.json is an
unfinished write and is ignored. Resuming also cuts metrics.jsonl and samples.jsonl back to
step N, so a resumed run's logs read as those of an uninterrupted one."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path


def save_checkpoint(backend, checkpoints_dir: Path, step: int, keep: int = 2,
                    state: dict | None = None) -> Path:
    """The backend's state and state.json ({"step": N} plus the loop's `state`, if any)."""
    path = Path(checkpoints_dir) / f"step-{step}"
    backend.save(path)
    if backend.rank == 0:  # state.json is written last
        (path / "state.json").write_text(json.dumps({**(state or {}), "step": step}) + "\n")
        for old in sorted(_complete(checkpoints_dir), key=lambda p: p[1])[:-keep]:
            shutil.rmtree(old[0], ignore_errors=True)
    return path


def _complete(checkpoints_dir: Path) -> list[tuple[Path, int]]:
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = re.fullmatch(r"step-(\d+)", p.name)
        if m and (p / "state.json").is_file():
            out.append((p, int(m.group(1))))
    return out


def read_state(checkpoints_dir: Path, step: int) -> dict:
    """The state.json of checkpoint `step` ({} when there is none)."""
    path = Path(checkpoints_dir) / f"step-{step}" / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def latest_checkpoint(checkpoints_dir: Path) -> tuple[Path, int] | None:
    """(folder, step) of the newest complete checkpoint, or None."""
    found = _complete(checkpoints_dir)
    return max(found, key=lambda p: p[1]) if found else None


def trim_jsonl(path: Path, step: int) -> None:
    """Drop the rows of a jsonl log whose "step" is past `step` (logged after the checkpoint
    a run resumes from, so they would be logged twice)."""
    path = Path(path)
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))
