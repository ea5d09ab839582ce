"""The one record shape every dataset loader, the generator and preprocessing share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MathRecord:
    """A maths problem with its reference solution and final answer.

    `metadata` holds what some sources have and others do not: `level` (int 1-5 or 1-3),
    `subject`, `id`, and for synthetic/TIR data `tir_solution` (a solution in the TIR text
    format whose ```python blocks really run).
    """

    problem: str  # the problem statement as shown to the model
    solution: str  # a worked reference solution ("" when the source has none)
    answer: str  # the final answer as text (integers without leading zeros or ".0")
    source: str  # dataset name or file the record came from
    metadata: dict[str, Any] = field(default_factory=dict)  # level, subject, id, tir_solution...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> MathRecord:
        return cls(problem=row["problem"], solution=row.get("solution", ""),
                   answer=row["answer"], source=row.get("source", ""),
                   metadata=dict(row.get("metadata") or {}))
