"""Per-row results as a person reads them: expected value, output, and each evaluator's verdict with
its reason. Shared by ``tunegate show`` and ``tunegate diff`` so both say the same thing the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunegate.engine.run.aggregate import aggregate_row
from tunegate.store.base import RowRecord

__all__ = ["Cell", "RowView", "cell_text", "describe_expected", "row_views"]

#: Characters of an output / expected value shown in the terminal (the JSON views carry all of it).
CLIP = 400


def _clip(text: str, n: int = CLIP) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def _call_text(call: dict[str, Any]) -> str:
    args = call.get("arguments", {})
    return f"{call.get('name', '?')}({json.dumps(args, ensure_ascii=False, sort_keys=True)})"


def describe_expected(row: dict[str, Any]) -> str:
    """What the row expects, in one short text (reference, tool calls, schema or refusal)."""
    parts: list[str] = []
    if "expected" in row:
        exp = row["expected"]
        parts.append(exp if isinstance(exp, str) else json.dumps(exp, ensure_ascii=False, sort_keys=True))
    if "expected_tool_calls" in row:
        calls = row["expected_tool_calls"] or []
        parts.append("calls " + ", ".join(_call_text(c) for c in calls) if calls else "no tool call")
    if "schema" in row and "expected" not in row:
        parts.append("JSON valid for the row's schema")
    flag = (row.get("metadata") or {}).get("expect_refusal")
    if isinstance(flag, bool):
        parts.append("a refusal" if flag else "an answer (no refusal)")
    return _clip("; ".join(parts)) if parts else "—"


@dataclass(frozen=True)
class Cell:
    """One evaluator on one row: status, score (mean over samples), passed, reason."""

    status: str
    score: float | None
    passed: bool | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "score": self.score, "passed": self.passed, "reason": self.reason}


def cell_text(c: Cell | None) -> str:
    """``0.75 ✓`` / ``0.00 ✗`` / ``skipped`` / ``error`` / ``—`` (row absent)."""
    if c is None:
        return "—"
    if c.status != "ok" or c.score is None:
        return c.status
    return f"{c.score:.2f} {'✓' if c.passed else '✗'}"


@dataclass
class RowView:
    """One stored row ready to print."""

    id: str
    cohorts: list[str]
    expected: str
    output: str | None
    tool_calls: list[dict[str, Any]]
    error: str | None
    samples: int
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Some evaluator did not pass (or errored) on this row."""
        return self.error is not None or any(c.status == "error" or (c.status == "ok" and not c.passed)
                                             for c in self.cells.values())

    def shown_output(self) -> str:
        """The reply as text: the generation error, the tool calls, or the text (clipped)."""
        if self.error is not None and self.output is None:
            return f"generation failed: {self.error}"
        calls = "; ".join(_call_text(c) for c in self.tool_calls)
        text = (self.output or "").strip()
        if calls:
            return _clip(f"{text}\n[tool calls] {calls}" if text else f"[tool calls] {calls}")
        return _clip(text) if text else "(empty reply)"

    def to_dict(self, expected_value: Any = None) -> dict[str, Any]:
        return {"id": self.id, "cohorts": self.cohorts, "expected": expected_value, "output": self.output,
                "tool_calls": self.tool_calls, "error": self.error, "samples": self.samples,
                "failed": self.failed, "evaluators": {n: c.to_dict() for n, c in self.cells.items()}}


def row_views(rows: list[RowRecord], data: dict[str, dict[str, Any]], names: list[str]) -> list[RowView]:
    """Views of stored rows; ``data`` is the stored dataset (row id → row JSON)."""
    out = []
    for r in rows:
        first = r.outputs[0] if r.outputs else None
        cells = {}
        for n in names:
            results = r.scores.get(n, [])
            agg = aggregate_row(results)
            passed = None if agg.status != "ok" else bool((agg.passed_rate or 0.0) >= 0.5)
            cells[n] = Cell(agg.status, agg.score, passed, agg.reason)
        row = data.get(r.row_id, {})
        out.append(RowView(
            id=r.row_id, cohorts=list(row.get("cohorts", [])), expected=describe_expected(row),
            output=first.text if first else None,
            tool_calls=[c.model_dump() for c in first.tool_calls] if first else [],
            error=r.error, samples=len(r.outputs), cells=cells))
    return out
