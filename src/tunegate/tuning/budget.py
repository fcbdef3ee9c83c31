"""Budgets an optimizer spends: metric calls (the unit GEPA and DSPy report), wall clock, tokens.

A *metric call* is one row scored for one prompt whose output had to be generated. A row whose
every sample came from the cache is free: re-scoring a prompt already seen (the seed, a parent on a
new minibatch) costs nothing, so budgets compare optimizers on the work they really caused.
Reflection calls (the optimizer's own LLM) are counted separately and share the token cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Budget", "BudgetExhausted", "BudgetMeter"]


class Budget(BaseModel):
    """Limits of one optimisation run."""

    model_config = ConfigDict(extra="forbid")

    metric_calls: int = Field(ge=1, description="Uncached row evaluations the optimizer may cause.")
    wall_s: float | None = Field(default=None, gt=0, description="Stop after this many seconds.")
    tokens: int | None = Field(default=None, ge=1, description="Cap on prompt+completion tokens (task + reflection).")


class BudgetExhausted(Exception):
    """Raised before work that the remaining budget cannot pay for; the optimizer stops cleanly."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class BudgetMeter:
    """Counts what was spent and refuses work beyond the budget."""

    def __init__(self, budget: Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.clock = clock
        self.started = clock()
        self.metric_calls = 0
        self.cached_rows = 0
        self.reflection_calls = 0
        self.cached_reflections = 0
        self.tokens = 0

    @property
    def remaining_calls(self) -> int:
        return self.budget.metric_calls - self.metric_calls

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def exhausted(self) -> str | None:
        """Why no more work may start, or None."""
        if self.metric_calls >= self.budget.metric_calls:
            return f"metric-call budget spent ({self.metric_calls}/{self.budget.metric_calls})"
        if self.budget.wall_s is not None and self.elapsed_s >= self.budget.wall_s:
            return f"wall-clock budget spent ({self.elapsed_s:.0f}s/{self.budget.wall_s:.0f}s)"
        if self.budget.tokens is not None and self.tokens >= self.budget.tokens:
            return f"token budget spent ({self.tokens}/{self.budget.tokens})"
        return None

    def require(self, uncached_rows: int) -> None:
        """Raise ``BudgetExhausted`` unless ``uncached_rows`` more metric calls are affordable."""
        if uncached_rows and (why := self.exhausted()):
            raise BudgetExhausted(why)
        if uncached_rows > self.remaining_calls:
            raise BudgetExhausted(f"metric-call budget: {uncached_rows} needed, {self.remaining_calls} left")

    def require_reflection(self) -> None:
        """Reflection spends no metric calls, but not past the wall-clock or token caps."""
        why = self.exhausted()
        if why and not why.startswith("metric-call"):
            raise BudgetExhausted(why)

    def charge(self, uncached_rows: int, cached_rows: int, tokens: int) -> None:
        self.metric_calls += uncached_rows
        self.cached_rows += cached_rows
        self.tokens += tokens

    def charge_reflection(self, *, cached: bool, tokens: int) -> None:
        if cached:
            self.cached_reflections += 1
        else:
            self.reflection_calls += 1
            self.tokens += tokens

    def snapshot(self) -> dict[str, Any]:
        return {"metric_calls": self.metric_calls, "cached_rows": self.cached_rows,
                "reflection_calls": self.reflection_calls, "cached_reflections": self.cached_reflections,
                "tokens": self.tokens, "wall_s": round(self.elapsed_s, 3),
                "budget": self.budget.model_dump(exclude_none=True)}
