"""Evaluator base class: required fields → ``skipped``, exceptions → ``error``, never a silent 0.

An evaluator is a small class with a ``name``, a ``version``, the row fields it ``requires``, a
``config`` (part of its identity) and one method, ``score(ctx)``. Model-based evaluators override
``score_batch`` to load their model once and run batched inference.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tunegate.core.example import Example
from tunegate.core.hashing import content_hash
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError

__all__ = ["EvalContext", "Evaluator"]

#: Example fields an evaluator may declare in ``requires``.
ROW_FIELDS = frozenset({"input", "context", "expected", "json_schema", "tools", "expected_tool_calls", "metadata"})


@dataclass(frozen=True)
class EvalContext:
    """Everything an evaluator may look at for one scored sample (new fields never break evaluators)."""

    example: Example
    output: ModelOutput
    candidate: dict[str, Any] = field(default_factory=dict)  #: candidate identity (judge-family checks)


class Evaluator(abc.ABC):
    """Base class of all evaluators (built-in and plugins)."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    #: Row fields without which the evaluator returns ``skipped``.
    requires: ClassVar[tuple[str, ...]] = ()
    #: One-line description shown by ``tunegate evaluators``.
    description: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = self.validate_config(dict(config))

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise config; raise UserError naming the bad key. Override to add keys."""
        if config:
            raise UserError(f"unknown option(s) {sorted(config)}", field=f"evaluators.{self.name}")
        return config

    def identity(self) -> dict[str, Any]:
        """Name, version and config: two runs are comparable only when these match."""
        return {"name": self.name, "version": self.version, "config": self.config}

    @property
    def hash(self) -> str:
        return content_hash(self.identity(), prefix="ev-")

    # -- results -------------------------------------------------------------
    def ok(self, score: float, reason: str = "", **kw: Any) -> EvalResult:
        return EvalResult.ok(self.name, self.version, score, reason, **kw)

    def skipped(self, reason: str) -> EvalResult:
        return EvalResult.skipped(self.name, self.version, reason)

    def error(self, reason: str) -> EvalResult:
        return EvalResult.error(self.name, self.version, reason)

    def missing(self, ex: Example) -> list[str]:
        """Required fields this row lacks."""
        out = []
        for f in self.requires:
            v = getattr(ex, f)
            if v is None or (f == "metadata" and not v):
                out.append("schema" if f == "json_schema" else f)
        return out

    # -- scoring -------------------------------------------------------------
    @abc.abstractmethod
    def score(self, ctx: EvalContext) -> EvalResult:
        """Score one sample. May raise; the caller turns exceptions into ``error`` results."""

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        """Score many samples; override to batch model inference. Rows here have required fields."""
        return [self._guard(c) for c in ctxs]

    def _guard(self, ctx: EvalContext) -> EvalResult:
        try:
            return self.score(ctx)
        except Exception as e:  # an evaluator bug is an error result, never a crash or a 0
            return self.error(f"{type(e).__name__}: {e}")

    def evaluate(self, ctx: EvalContext) -> EvalResult:
        """Score one sample with the skip/error discipline applied."""
        return self.evaluate_batch([ctx])[0]

    def evaluate_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        """Score many samples: rows missing required fields are ``skipped``; failures are ``error``."""
        results: list[EvalResult | None] = [None] * len(ctxs)
        todo: list[int] = []
        for i, c in enumerate(ctxs):
            miss = self.missing(c.example)
            if miss:
                results[i] = self.skipped(f"row has no {', '.join(miss)}")
            else:
                todo.append(i)
        if todo:
            try:
                scored = self.score_batch([ctxs[i] for i in todo])
            except Exception as e:
                scored = [self.error(f"{type(e).__name__}: {e}") for _ in todo]
            if len(scored) != len(todo):
                scored = [self.error("evaluator returned the wrong number of results") for _ in todo]
            for i, r in zip(todo, scored, strict=True):
                results[i] = r
        return [r for r in results if r is not None]
