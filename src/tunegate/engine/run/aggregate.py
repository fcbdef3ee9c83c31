"""From per-sample results to one value per row and evaluator, in one place.

With n samples per row (stochastic decoding) the row's score is the mean over its samples, so
the comparison's bootstrap over rows carries sampling noise. A row with any errored sample is an
error for that evaluator — averaging over the survivors would hide failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunegate.core.result import EvalResult, EvalStatus

__all__ = ["RowScore", "aggregate_row", "summarise"]


@dataclass(frozen=True)
class RowScore:
    """One row, one evaluator: status and mean score over samples (None unless ok)."""

    status: EvalStatus
    score: float | None
    passed_rate: float | None
    reason: str


def aggregate_row(results: Sequence[EvalResult]) -> RowScore:
    if not results:
        return RowScore("error", None, None, "no result recorded")
    errors = [r for r in results if r.status == "error"]
    if errors:
        return RowScore("error", None, None, errors[0].reason)
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        return RowScore("skipped", None, None, results[0].reason)
    mean = sum(r.score or 0.0 for r in ok) / len(ok)
    passed = sum(1.0 for r in ok if r.passed) / len(ok)
    reason = ok[0].reason if len(ok) == 1 else f"mean of {len(ok)} samples; first: {ok[0].reason}"
    return RowScore("ok", mean, passed, reason)


def summarise(rows: Sequence[Mapping[str, Sequence[EvalResult]]], names: Sequence[str]
              ) -> dict[str, dict[str, float | int | None]]:
    """Per evaluator: mean over ok rows, pass rate, and counts of ok / error / skipped rows."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        agg = [aggregate_row(r.get(name, [])) for r in rows]
        ok = [a for a in agg if a.status == "ok"]
        out[name] = {
            "mean": (sum(a.score or 0.0 for a in ok) / len(ok)) if ok else None,
            "pass_rate": (sum(a.passed_rate or 0.0 for a in ok) / len(ok)) if ok else None,
            "n_ok": len(ok),
            "n_error": sum(1 for a in agg if a.status == "error"),
            "n_skipped": sum(1 for a in agg if a.status == "skipped"),
        }
    return out
