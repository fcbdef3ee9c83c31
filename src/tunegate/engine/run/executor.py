"""A stored run: score every planned row (:func:`.rows.score_rows`), committing each row as it finishes.

Rows are scored in chunks sized to the backend (its batch size or concurrency). Each finished
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
from tunegate.backends.base import Backend
from tunegate.backends.cache import CachedBackend
from tunegate.core.result import EvalResult
from tunegate.engine.run.aggregate import summarise
from tunegate.engine.run.plan import RunPlan, machine_info
from tunegate.engine.run.rows import ProgressHook, ScoredRow, score_rows
from tunegate.store.sqlite import Store

__all__ = ["ProgressHook", "RunSummary", "execute", "open_run", "run_plan"]


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


def open_run(plan: RunPlan, store: Store, *, resume: bool) -> tuple[str, bool]:
    """Store the dataset and candidate, then (run id, resumed): the latest unfinished run of this
    identity when ``resume``, else a new run with its provenance (version, seeds, machine).

    Shared by :func:`execute` and the Ray executor so a run started by one resumes under the other.
    """
    store.put_dataset(plan.dataset)
    name, kind, spec, lineage = plan.candidate_record()
    store.put_candidate(plan.candidate_hash, name, kind, spec, lineage)
    run_id = store.latest_unfinished(plan.identity) if resume else None
    if run_id is not None:
        return run_id, True
    seeds = {"decoding_seed": plan.candidate.params.seed, "samples": plan.candidate.params.n} \
        if plan.candidate else {}
    meta = {"tunegate_version": __version__, "dataset_source": plan.dataset.source, "candidate_name": name,
            "seeds": seeds, "machine": machine_info(), "samples_per_row": plan.samples}
    return store.create_run(identity=plan.identity, dataset_hash=plan.dataset.hash,
                            candidate_hash=plan.candidate_hash, selection=plan.selection,
                            evaluators=[e.identity() for e in plan.evaluators], n_rows=len(plan.rows),
                            meta=meta), False


async def execute(plan: RunPlan, store: Store, backend: Backend | None = None, *, resume: bool = False,
                  use_cache: bool = True, progress: ProgressHook | None = None,
                  row_hook: Callable[[str, ScoredRow], None] | None = None) -> RunSummary:
    """Run ``plan`` into ``store``; returns the summary. ``backend`` is required for candidates.

    ``row_hook(run_id, row)`` is called after each row is committed (tracing: one span per row).
    """
    t0 = time.perf_counter()
    run_id, resumed = open_run(plan, store, resume=resume)
    done = store.done_rows(run_id)
    seq_of = {ex.id: i for i, ex in enumerate(plan.rows)}
    pending = [ex for ex in plan.rows if ex.id not in done]
    cached = CachedBackend(backend, store, enabled=use_cache) if backend is not None else None
    if plan.candidate is not None and cached is None:
        raise ValueError("a backend is required to run a candidate")

    def commit(chunk: list[ScoredRow], calls: int, hits: int) -> None:
        # One transaction per row, the chunk's model calls and cache hits on its first row.
        for j, row in enumerate(chunk):
            scores: dict[str, Sequence[EvalResult]] = dict(row.scores)
            store.write_row(run_id, row.example.id, seq_of[row.example.id], row.outputs, row.errors, scores,
                            model_calls=calls if j == 0 else 0, cache_hits=hits if j == 0 else 0,
                            error=row.error)
            if row_hook is not None:
                row_hook(run_id, row)

    identity = plan.candidate.identity() if plan.candidate else {"outputs": plan.candidate_hash}
    try:
        await score_rows(pending, plan.evaluators, candidate=plan.candidate, backend=cached, outputs=plan.outputs,
                         candidate_identity=identity, on_chunk=commit, progress=progress, done=len(done),
                         total=len(plan.rows), keep=False)
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
