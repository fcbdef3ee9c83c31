"""The run executor: generate + evaluate every planned row, committing each row as it finishes.

Rows are processed in chunks sized to the backend (its batch size or concurrency). Each finished
row is one SQLite transaction, so a run killed at any instant resumes (``resume=True``) with the
rows still missing — exactly N rows in the end, no duplicates, nothing lost. Model calls go
through the content-addressed cache: an unchanged candidate re-runs with zero model calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunegate._version import __version__
from tunegate.backends.base import Backend, GenerationRequest
from tunegate.backends.cache import CachedBackend
from tunegate.core.example import Example
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.engine.run.aggregate import summarise
from tunegate.engine.run.plan import RunPlan, machine_info
from tunegate.errors import BackendError
from tunegate.evaluators.base import EvalContext
from tunegate.store.sqlite import Store

__all__ = ["ProgressHook", "RunSummary", "execute", "run_plan"]

#: Called after each committed chunk with (rows done, rows total).
ProgressHook = Callable[[int, int], None]


@dataclass
class RunSummary:
    """What ``tunegate run`` prints (``--json`` prints ``to_dict()``)."""

    run_id: str
    rows: int
    model_calls: int
    cache_hits: int
    evaluators: dict[str, dict[str, Any]]
    resumed: bool = False
    rows_this_session: int = 0
    wall_s: float = 0.0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "rows": self.rows, "model_calls": self.model_calls,
                "cache_hits": self.cache_hits, "evaluators": self.evaluators, "resumed": self.resumed,
                "rows_this_session": self.rows_this_session, "generation_errors": self.errors,
                "wall_s": round(self.wall_s, 3), **self.extra}


def _requests(plan: RunPlan, ex: Example) -> list[GenerationRequest]:
    cand = plan.candidate
    assert cand is not None
    msgs = tuple(cand.prompt.render(ex))
    tools = tuple(ex.tools) if (cand.tools and ex.tools) else None
    return [GenerationRequest(msgs, cand.params, tools, i) for i in range(cand.params.n)]


def _prompt_size(plan: RunPlan, ex: Example) -> int:
    assert plan.candidate is not None
    size = sum(len(m.content or "") for m in plan.candidate.prompt.render(ex))
    return size + (sum(len(str(t)) for t in ex.tools) // 3 if plan.candidate.tools and ex.tools else 0)


async def _generate(plan: RunPlan, backend: CachedBackend | None, chunk: Sequence[Example]
                    ) -> list[tuple[list[ModelOutput | None], list[str | None]]]:
    """Outputs (or errors) per row, per sample."""
    if plan.outputs is not None:
        out = []
        for ex in chunk:
            samples = plan.outputs.outputs.get(ex.id)
            if samples is None:
                out.append(([None], ["no output for this row in " + plan.outputs.path]))
            else:
                out.append((list(samples), [None] * len(samples)))
        return out
    assert backend is not None
    reqs = [_requests(plan, ex) for ex in chunk]
    flat = [r for rs in reqs for r in rs]
    results = await backend.generate(flat)
    out, k = [], 0
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


def _evaluate(plan: RunPlan, chunk: Sequence[Example],
              generated: Sequence[tuple[list[ModelOutput | None], list[str | None]]]) -> list[dict[str, list[EvalResult]]]:
    """Scores per row: evaluator name → one result per sample. Failed generations are errors."""
    cand_identity = plan.candidate.identity() if plan.candidate else {"outputs": plan.candidate_hash}
    ctxs: list[EvalContext] = []
    where: list[tuple[int, int]] = []
    for r, (ex, (outs, _)) in enumerate(zip(chunk, generated, strict=True)):
        for s, o in enumerate(outs):
            if o is not None:
                ctxs.append(EvalContext(example=ex, output=o, candidate=cand_identity))
                where.append((r, s))
    per_row: list[dict[str, list[EvalResult]]] = []
    for _outs, errs in generated:
        per_row.append({e.name: [e.error(f"generation failed: {err}") if err else e.error("pending")
                                 for err in errs] for e in plan.evaluators})
    for ev in plan.evaluators:
        results = ev.evaluate_batch(ctxs) if ctxs else []
        for (r, s), res in zip(where, results, strict=True):
            per_row[r][ev.name][s] = res
    return per_row


async def execute(plan: RunPlan, store: Store, backend: Backend | None = None, *, resume: bool = False,
                  use_cache: bool = True, progress: ProgressHook | None = None) -> RunSummary:
    """Run ``plan`` into ``store``; returns the summary. ``backend`` is required for candidates."""
    t0 = time.perf_counter()
    store.put_dataset(plan.dataset)
    name, kind, spec, lineage = plan.candidate_record()
    store.put_candidate(plan.candidate_hash, name, kind, spec, lineage)
    run_id = store.latest_unfinished(plan.identity) if resume else None
    resumed = run_id is not None
    if run_id is None:
        seeds = {"decoding_seed": plan.candidate.params.seed, "samples": plan.candidate.params.n} \
            if plan.candidate else {}
        meta = {"tunegate_version": __version__, "dataset_source": plan.dataset.source,
                "candidate_name": name, "seeds": seeds, "machine": machine_info(),
                "samples_per_row": plan.samples}
        run_id = store.create_run(identity=plan.identity, dataset_hash=plan.dataset.hash,
                                  candidate_hash=plan.candidate_hash, selection=plan.selection,
                                  evaluators=[e.identity() for e in plan.evaluators],
                                  n_rows=len(plan.rows), meta=meta)
    done = store.done_rows(run_id)
    seq_of = {ex.id: i for i, ex in enumerate(plan.rows)}
    pending = [ex for ex in plan.rows if ex.id not in done]
    if plan.candidate is not None:
        # Batch rows of similar prompt length together: a batch is padded to its longest prompt,
        # and on a CPU the prefill dominates. Rows are committed with their dataset position
        # (seq), so the processing order changes nothing in the stored run.
        pending.sort(key=lambda ex: _prompt_size(plan, ex))
    cached = CachedBackend(backend, store, enabled=use_cache) if backend is not None else None
    if plan.candidate is not None and cached is None:
        raise ValueError("a backend is required to run a candidate")
    chunk_size = max(1, (cached.max_batch if cached else 64))
    total, n_done, gen_errors = len(plan.rows), len(done), 0
    if progress:
        progress(n_done, total)
    try:
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start:start + chunk_size]
            calls0 = cached.model_calls if cached else 0
            hits0 = cached.cache_hits if cached else 0
            generated = await _generate(plan, cached, chunk)
            scores = await asyncio.to_thread(_evaluate, plan, chunk, generated)
            calls = (cached.model_calls - calls0) if cached else 0
            hits = (cached.cache_hits - hits0) if cached else 0
            for j, (ex, (outs, errs), sc) in enumerate(zip(chunk, generated, scores, strict=True)):
                row_err = next((e for e in errs if e), None)
                gen_errors += row_err is not None
                store.write_row(run_id, ex.id, seq_of[ex.id], outs, errs, sc,
                                model_calls=calls if j == 0 else 0, cache_hits=hits if j == 0 else 0,
                                error=row_err)
            n_done += len(chunk)
            if progress:
                progress(n_done, total)
    finally:
        if cached is not None:
            await cached.aclose()
    store.finish_run(run_id)
    rec = store.run(run_id)
    rows = store.rows(run_id)
    summary = summarise([r.scores for r in rows], [e.name for e in plan.evaluators])
    return RunSummary(run_id=run_id, rows=len(rows), model_calls=rec.model_calls, cache_hits=rec.cache_hits,
                      evaluators=summary, resumed=resumed, rows_this_session=len(pending),
                      wall_s=time.perf_counter() - t0, errors=sum(1 for r in rows if r.error),
                      extra={"dataset_hash": plan.dataset.hash, "candidate_hash": plan.candidate_hash,
                             "session_model_calls": cached.model_calls if cached else 0,
                             "session_cache_hits": cached.cache_hits if cached else 0})


def run_plan(plan: RunPlan, store: Store, backend: Backend | None = None, **kw: Any) -> RunSummary:
    """Synchronous wrapper around :func:`execute`."""
    return asyncio.run(execute(plan, store, backend, **kw))
