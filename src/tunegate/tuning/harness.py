"""Scores a prompt on rows for an optimizer: the engine's executor, plus what only tuning needs.

Rows are rendered, generated (through the cache) and evaluated by the engine's one row executor
(:func:`tunegate.engine.run.score_rows`), exactly as in a stored run. This is the only way an
optimizer touches the task model, so three tuning promises are kept here rather than in each
optimizer: rows outside the optimizer's splits (the **test** rows that later gate the
result) are refused; the metric-call budget is checked before generation and charged only for
rows that were not in the cache; and every scored row carries the evaluators' textual feedback
(what reflective optimizers learn from).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunegate.backends.base import Backend
from tunegate.backends.cache import CachedBackend, CacheStore, cache_key
from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.example import Example, Message
from tunegate.core.prompt import PromptTemplate
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.engine.run.rows import ScoredRow, requests_for, score_rows
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator
from tunegate.tuning.budget import BudgetMeter
from tunegate.tuning.objective import Objective

__all__ = ["EvalBatch", "RowTrace", "SplitViolation", "TaskHarness"]


class SplitViolation(RuntimeError):
    """A row from a split the optimizer may not see (test) reached the harness: a bug, never data."""


@dataclass
class RowTrace:
    """One row scored for one prompt: what went in, what came out, and what the graders said."""

    row_id: str
    value: float | None                 #: objective (None = no objective evaluator applies)
    error: bool
    results: dict[str, list[EvalResult]]  #: evaluator → one result per sample
    outputs: list[ModelOutput | None]
    messages: list[Message]
    cached: bool
    reason: str = ""

    @property
    def text(self) -> str:
        """First sample's text (tool calls rendered compactly) for reflection prompts."""
        out = self.outputs[0] if self.outputs else None
        if out is None:
            return "(generation failed)"
        calls = "; ".join(f"{c.name}({c.arguments})" for c in out.tool_calls)
        return (out.text + (f"\n[tool calls] {calls}" if calls else "")).strip() or "(empty)"

    @property
    def feedback(self) -> str:
        """Evaluator feedback of the first sample, one line per evaluator that had something to say."""
        lines = []
        for name, rs in self.results.items():
            r = rs[0] if rs else None
            if r is None or r.status == "skipped":
                continue
            msg = r.feedback or r.reason
            if r.status == "error":
                lines.append(f"{name}: evaluator error: {r.reason}")
            elif msg and r.score != 1.0:
                lines.append(f"{name} ({r.score:.2f}): {msg}")
            elif msg:
                lines.append(f"{name} ({r.score:.2f}): ok")
        return "\n".join(lines)


@dataclass
class EvalBatch:
    """A prompt scored on a set of rows."""

    traces: list[RowTrace]
    metric_calls: int = 0
    cached_rows: int = 0
    tokens: int = 0
    means: dict[str, float | None] = field(default_factory=dict)  #: per evaluator, over ok results

    @property
    def scores(self) -> dict[str, float]:
        """Row id → objective, for rows where the objective applies."""
        return {t.row_id: t.value for t in self.traces if t.value is not None}

    @property
    def mean(self) -> float:
        vals = list(self.scores.values())
        return float(np.mean(vals)) if vals else 0.0

    @property
    def errors(self) -> int:
        return sum(t.error for t in self.traces)


class TaskHarness:
    """Evaluates prompt variants of one seed candidate on the train/dev rows of one dataset."""

    def __init__(self, dataset: Dataset, seed: CandidateSpec, backend: Backend, cache: CacheStore,
                 evaluators: Sequence[Evaluator], objective: Objective, meter: BudgetMeter, *,
                 allowed_splits: Iterable[str] = ("train", "dev")) -> None:
        names = {e.name for e in evaluators}
        missing = [n for n in objective.evaluators if n not in names]
        if missing:
            raise UserError(f"objective names evaluator(s) {missing} that are not in the suite "
                            f"{sorted(names)}", field="objective")
        self.dataset = dataset
        self.seed = seed
        self.backend = CachedBackend(backend, cache)
        self.cache = cache
        self.evaluators = list(evaluators)
        self.objective = objective
        self.meter = meter
        self.allowed = frozenset(allowed_splits)
        self.rows_seen: set[str] = set()
        self._by_split: dict[str, list[Example]] = {}
        for ex in dataset:
            self._by_split.setdefault(dataset.split_of(ex), []).append(ex)

    def rows(self, split: str) -> list[Example]:
        """Rows of an allowed split, in dataset order."""
        if split not in self.allowed:
            raise SplitViolation(f"split {split!r} is not available to the optimizer (allowed: {sorted(self.allowed)})")
        return list(self._by_split.get(split, []))

    def objective_rows(self, split: str) -> tuple[list[Example], int]:
        """Rows of ``split`` that some objective evaluator can score, and how many were left out.

        A row lacking every objective evaluator's required fields (a tool-call row under a
        ``json_validation`` objective) would be generated, charged as a metric call and then
        skipped: it cannot move the objective, only spend the budget and dilute minibatch means.
        """
        by_name = {e.name: e for e in self.evaluators}
        evs = [by_name[n] for n in self.objective.evaluators]
        rows = self.rows(split)
        keep = [ex for ex in rows if any(not ev.missing(ex) for ev in evs)]
        return keep, len(rows) - len(keep)

    def candidate(self, prompt: PromptTemplate) -> CandidateSpec:
        """The seed candidate with ``prompt`` swapped in (same model, params, tools)."""
        return self.seed.model_copy(update={"prompt": prompt})

    def compile_errors(self, prompt: PromptTemplate, rows: Sequence[Example]) -> list[str]:
        """Why ``prompt`` cannot render some of ``rows`` (a proposal that lost a placeholder)."""
        try:
            prompt.variables()
        except UserError as e:
            return [str(e)]
        errs = []
        for ex in rows:
            miss = prompt.check_variables(ex)
            if miss:
                errs.append(f"row {ex.id}: no value for {miss}")
        return errs

    async def evaluate(self, prompt: PromptTemplate, rows: Sequence[Example]) -> EvalBatch:
        """Score ``prompt`` on ``rows``; raises BudgetExhausted before generating what it cannot pay.

        Rows are scored by the engine's executor (:func:`tunegate.engine.run.score_rows`): the same
        cache, batching and error statuses as a stored run. What is added here is tuning's own:
        the split guard, the budget, and the objective per row.
        """
        for ex in rows:
            split = self.dataset.split_of(ex)
            if split not in self.allowed:
                raise SplitViolation(f"row {ex.id!r} is in split {split!r}; the optimizer may only use "
                                     f"{sorted(self.allowed)}")
        errs = self.compile_errors(prompt, rows)
        if errs:
            raise UserError(f"prompt does not compile: {errs[0]}", field="prompt")
        cand = self.candidate(prompt)
        ident = self.backend.identity()
        uncached = sum(1 for ex in rows
                       if any(self.cache.cache_get(cache_key(ident, r)) is None for r in requests_for(cand, ex)))
        self.meter.require(uncached)
        scored = await score_rows(rows, self.evaluators, candidate=cand, backend=self.backend)
        self.rows_seen.update(ex.id for ex in rows)
        return self._batch(scored, uncached)

    def _batch(self, scored: Sequence[ScoredRow], uncached: int) -> EvalBatch:
        """Objective per row (mean over samples), charged to the meter; per-evaluator means."""
        traces = []
        tokens = 0
        for row in scored:
            vals, errs, reasons = [], False, []
            for s in range(len(row.outputs)):
                ro = self.objective.row({n: rs[s] for n, rs in row.scores.items()})
                errs |= ro.error
                if ro.value is not None:
                    vals.append(ro.value)
                if ro.reason:
                    reasons.append(ro.reason)
            tokens += row.tokens
            traces.append(RowTrace(row.example.id, float(np.mean(vals)) if vals else None, errs, row.scores,
                                   row.outputs, row.messages, row.cached, "; ".join(dict.fromkeys(reasons))))
        self.meter.charge(uncached, len(scored) - uncached, tokens)
        means: dict[str, float | None] = {}
        for ev in self.evaluators:
            vals = [x.score for t in traces for x in t.results[ev.name] if x.status == "ok" and x.score is not None]
            means[ev.name] = float(np.mean(vals)) if vals else None
        return EvalBatch(traces, uncached, len(scored) - uncached, tokens, means)

    def provenance(self) -> dict[str, Any]:
        """What the optimisation ran on (recorded in history and lineage)."""
        return {"dataset_hash": self.dataset.hash, "dataset_source": self.dataset.source,
                "seed_candidate": self.seed.hash, "backend": self.backend.identity(),
                "evaluators": [e.identity() for e in self.evaluators],
                "objective": self.objective.model_dump(mode="json"), "splits": sorted(self.allowed)}

    async def aclose(self) -> None:
        await self.backend.aclose()
