"""Scoring rows: render → generate (through the cache) → evaluate, chunk by chunk.

This is the one row executor of the project. A stored run (:func:`tunegate.engine.run.execute`)
and a prompt optimizer's harness (:class:`tunegate.tuning.harness.TaskHarness`) both call
:func:`score_rows`, so the cache, the batching (chunks sized to the backend, rows of similar
prompt length together), the error statuses (a failed generation is an ``error`` result for every
evaluator, never a 0) and the progress hook behave the same for runs and for tuning; a fix here
reaches both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.backends.cache import CachedBackend
from tunegate.core.candidate import CandidateSpec
from tunegate.core.example import Example, Message
from tunegate.core.outputs import OutputsFile
from tunegate.core.request import GenerationRequest
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import BackendError
from tunegate.evaluators.base import EvalContext, Evaluator

__all__ = ["ChunkHook", "ProgressHook", "ScoredRow", "prompt_size", "requests_for", "score_rows"]

#: Called after each scored chunk with (rows done, rows total).
ProgressHook = Callable[[int, int], None]
#: Called after each scored chunk with (its rows, model calls it made, cache hits it had), before
#: the next chunk is generated: a stored run commits the chunk here, so it can resume after a kill.
ChunkHook = Callable[[list["ScoredRow"], int, int], None]


@dataclass
class ScoredRow:
    """One row scored: the outputs (or generation errors) per sample and every evaluator's results."""

    example: Example
    outputs: list[ModelOutput | None]          #: one per sample; None where generation failed
    errors: list[str | None]                   #: generation error per sample (None = ok)
    scores: dict[str, list[EvalResult]]        #: evaluator name → one result per sample
    messages: list[Message]                    #: the rendered prompt (empty for an outputs file)

    @property
    def error(self) -> str | None:
        """The row's first generation error (None when every sample was generated)."""
        return next((e for e in self.errors if e), None)

    @property
    def cached(self) -> bool:
        """Every sample came from the cache (no model call was made for this row)."""
        return all(o is not None and o.cached for o in self.outputs)

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens of the samples that were really generated (not cached)."""
        return sum(o.usage.prompt_tokens + o.usage.completion_tokens
                   for o in self.outputs if o is not None and not o.cached)


def requests_for(candidate: CandidateSpec, ex: Example) -> list[GenerationRequest]:
    """The generation requests of one row: its rendered prompt once per sample (``params.n``)."""
    msgs = tuple(candidate.prompt.render(ex))
    tools = tuple(ex.tools) if (candidate.tools and ex.tools) else None
    return [GenerationRequest(msgs, candidate.params, tools, i) for i in range(candidate.params.n)]


def prompt_size(candidate: CandidateSpec, ex: Example) -> int:
    """Rendered prompt length in characters (tools weigh a third), the key rows are batched by."""
    size = sum(len(m.content or "") for m in candidate.prompt.render(ex))
    return size + (sum(len(str(t)) for t in ex.tools) // 3 if candidate.tools and ex.tools else 0)


async def _generate(candidate: CandidateSpec | None, backend: CachedBackend | None, outputs: OutputsFile | None,
                    chunk: Sequence[Example]) -> list[tuple[list[ModelOutput | None], list[str | None]]]:
    """Outputs (or errors) per row, per sample."""
    out: list[tuple[list[ModelOutput | None], list[str | None]]] = []
    if outputs is not None:
        for ex in chunk:
            samples = outputs.outputs.get(ex.id)
            if samples is None:
                out.append(([None], ["no output for this row in " + outputs.path]))
            else:
                out.append((list(samples), [None] * len(samples)))
        return out
    assert candidate is not None and backend is not None
    reqs = [requests_for(candidate, ex) for ex in chunk]
    results = await backend.generate([r for rs in reqs for r in rs])
    k = 0
    for rs in reqs:
        outs: list[ModelOutput | None] = []
        errs: list[str | None] = []
        for _ in rs:
            res = results[k]
            k += 1
            if isinstance(res, BackendError):
                outs.append(None)
                errs.append(str(res))
            else:
                outs.append(res)
                errs.append(None)
        out.append((outs, errs))
    return out


def _evaluate(evaluators: Sequence[Evaluator], identity: dict[str, Any], chunk: Sequence[Example],
              generated: Sequence[tuple[list[ModelOutput | None], list[str | None]]]
              ) -> list[dict[str, list[EvalResult]]]:
    """Scores per row: evaluator name → one result per sample. Failed generations are errors."""
    ctxs: list[EvalContext] = []
    where: list[tuple[int, int]] = []
    for r, (ex, (outs, _)) in enumerate(zip(chunk, generated, strict=True)):
        for s, o in enumerate(outs):
            if o is not None:
                ctxs.append(EvalContext(example=ex, output=o, candidate=identity))
                where.append((r, s))
    per_row = [{e.name: [e.error(f"generation failed: {err}") if err else e.error("pending") for err in errs]
                for e in evaluators} for _outs, errs in generated]
    for ev in evaluators:
        results = ev.evaluate_batch(ctxs) if ctxs else []
        for (r, s), res in zip(where, results, strict=True):
            per_row[r][ev.name][s] = res
    return per_row


async def score_rows(rows: Sequence[Example], evaluators: Sequence[Evaluator], *,
                     candidate: CandidateSpec | None = None, backend: CachedBackend | None = None,
                     outputs: OutputsFile | None = None, candidate_identity: dict[str, Any] | None = None,
                     on_chunk: ChunkHook | None = None, progress: ProgressHook | None = None,
                     done: int = 0, total: int | None = None, keep: bool = True) -> list[ScoredRow]:
    """Score ``rows`` for ``candidate`` through ``backend`` (or from a recorded ``outputs`` file).

    Rows are processed in chunks of ``backend.max_batch`` (64 for an outputs file), shortest
    prompts first, and returned in the order given. ``done``/``total`` offset the progress counts
    (a resumed run reports the rows it already had). ``keep=False`` returns nothing and holds no
    row after its chunk hook ran (a stored run of many rows reads them back from the store).
    """
    if (candidate is None) == (outputs is None):
        raise ValueError("score rows for exactly one of a candidate and an outputs file")
    if candidate is not None and backend is None:
        raise ValueError("a backend is required to run a candidate")
    identity = candidate_identity if candidate_identity is not None else \
        (candidate.identity() if candidate is not None else {})
    order = list(range(len(rows)))
    if candidate is not None:
        # Batch rows of similar prompt length together: a batch is padded to its longest prompt,
        # and on a CPU the prefill dominates. Results go back in the caller's order.
        sizes = [prompt_size(candidate, ex) for ex in rows]
        order.sort(key=lambda i: sizes[i])
    chunk_size = max(1, backend.max_batch if backend is not None else 64)
    total_ = total if total is not None else done + len(rows)
    scored: list[ScoredRow | None] = [None] * len(rows)
    n_done = done
    if progress:
        progress(n_done, total_)
    for start in range(0, len(order), chunk_size):
        idx = order[start:start + chunk_size]
        chunk = [rows[i] for i in idx]
        calls0 = backend.model_calls if backend else 0
        hits0 = backend.cache_hits if backend else 0
        generated = await _generate(candidate, backend, outputs, chunk)
        scores = await asyncio.to_thread(_evaluate, evaluators, identity, chunk, generated)
        part = [ScoredRow(ex, outs, errs, sc, list(candidate.prompt.render(ex)) if candidate else [])
                for ex, (outs, errs), sc in zip(chunk, generated, scores, strict=True)]
        if keep:
            for i, row in zip(idx, part, strict=True):
                scored[i] = row
        if on_chunk is not None:
            on_chunk(part, (backend.model_calls - calls0) if backend else 0,
                     (backend.cache_hits - hits0) if backend else 0)
        n_done += len(chunk)
        if progress:
            progress(n_done, total_)
    return [r for r in scored if r is not None]
