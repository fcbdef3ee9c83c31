"""What an evaluator returns for one row, and what a model returned for one call."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunegate.core.example import ToolCall

__all__ = ["EvalResult", "EvalStatus", "ModelOutput", "Usage"]

EvalStatus = Literal["ok", "error", "skipped"]


class EvalResult(BaseModel):
    """One evaluator's verdict on one row.

    ``status`` is ``ok`` with a ``score`` in [0, 1]; ``skipped`` when the row lacks a field the
    evaluator needs; ``error`` when the evaluator failed. Skipped and errored rows have no score:
    they are never averaged in as zeros.
    """

    model_config = ConfigDict(extra="forbid")

    evaluator: str = Field(description="Evaluator name.")
    version: str = Field(description="Evaluator version; part of its identity.")
    status: EvalStatus = "ok"
    score: float | None = Field(default=None, description="In [0, 1] when status is ok, else None.")
    passed: bool | None = Field(default=None, description="Pass/fail at the evaluator's threshold.")
    reason: str = Field(default="", description="Why this score, in one or two sentences.")
    feedback: str = Field(default="", description="Actionable text for optimizers (what to fix).")
    details: dict[str, Any] = Field(default_factory=dict, description="Structured evidence.")

    @model_validator(mode="after")
    def _check(self) -> EvalResult:
        if self.status == "ok":
            if self.score is None or not math.isfinite(self.score) or not 0.0 <= self.score <= 1.0:
                raise ValueError(f"score must be in [0, 1] when status is ok, got {self.score!r}")
            if self.passed is None:
                self.passed = self.score >= 0.5
        else:
            self.score = None
            self.passed = None
        return self

    @classmethod
    def ok(cls, evaluator: str, version: str, score: float, reason: str = "", *,
           passed: bool | None = None, feedback: str = "", **details: Any) -> EvalResult:
        return cls(evaluator=evaluator, version=version, status="ok", score=float(score), passed=passed,
                   reason=reason, feedback=feedback, details=details)

    @classmethod
    def skipped(cls, evaluator: str, version: str, reason: str) -> EvalResult:
        return cls(evaluator=evaluator, version=version, status="skipped", reason=reason)

    @classmethod
    def error(cls, evaluator: str, version: str, reason: str) -> EvalResult:
        return cls(evaluator=evaluator, version=version, status="error", reason=reason)


class Usage(BaseModel):
    """Token usage reported by the backend (0 when unknown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class ModelOutput(BaseModel):
    """One generated sample: text and/or tool calls, with usage and timing."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    model: str | None = None
    cached: bool = False
