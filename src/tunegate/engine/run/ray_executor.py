"""The Ray executor: the same stored run as :func:`tunegate.engine.run.execute`, scored across a Ray cluster.

``tunegate run --executor ray`` (or ``tunegate.run(..., executor="ray")``). ``ray.init()`` joins the
cluster named by ``RAY_ADDRESS``, or starts a local Ray instance when none is set, so the same
command runs on a laptop and on a cluster.

How it is split, and why:

* **Shards are the local executor's chunks.** The driver orders the pending rows exactly as
  :func:`~tunegate.engine.run.rows.score_rows` would (shortest prompts first) and cuts them at the
  backend's batch size. Each shard is scored by one worker through ``score_rows`` itself, so every
  evaluator sees the very batches it sees locally: scores are identical (batched embedding models
  pad to the longest row of a batch, so a different split could move a float's last bits).
* **Workers are stateful actors.** Each holds the evaluators (a model-based evaluator loads its
  model once per actor, on first use), the candidate's backend (a local model is loaded once per
  actor) and its own connection to the store's model-call cache.
* **Bounded concurrency per endpoint.** An OpenAI-compatible candidate's ``concurrency`` is the
  limit for its endpoint as a whole: it is divided among the actors (``endpoint_concurrency``
  overrides it), so adding workers never multiplies the load on the server.
* **Commits and resume as the local executor.** Workers return scored rows; the driver commits
  each row in its own transaction as its shard comes back (outputs, scores, counters, done
  marker), so ``--resume`` after a kill continues with exactly the missing rows. A worker or node
  that dies mid-shard loses nothing: its shard is scored again by a surviving (or new) actor, and
  only rows not yet committed are ever written.

The store must be reachable from every worker for the cache: a SQLite file on one machine, a
PostgreSQL URL (``TUNEGATE_DB=postgresql://…``) on a cluster of several.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.backends.cache import CachedBackend
from tunegate.core.candidate import CandidateSpec
from tunegate.core.example import Example
from tunegate.core.outputs import OutputsFile
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.engine.run.aggregate import summarise
from tunegate.engine.run.executor import RunSummary, open_run
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import RunPlan
from tunegate.engine.run.rows import ProgressHook, prompt_size, score_rows
from tunegate.errors import TunegateError, UserError
from tunegate.evaluators.base import Evaluator
from tunegate.store.base import Store
from tunegate.store.url import StoreURL

__all__ = ["RayOptions", "ShardResult", "run_plan_ray", "shard_rows"]

#: Times one shard may be lost with its worker before the run gives up.
MAX_SHARD_ATTEMPTS = 4


@dataclass(frozen=True)
class RayOptions:
    """How the run uses Ray. ``workers=None``: one actor per CPU of the cluster (at most one per shard)."""

    address: str | None = None
    workers: int | None = None
    endpoint_concurrency: int | None = None
    cpus_per_worker: float = 1.0


@dataclass
class ShardResult:
    """What a worker sends back for one shard: each row's outputs, errors and scores, plus counters."""

    rows: list[tuple[str, list[ModelOutput | None], list[str | None], dict[str, list[EvalResult]]]]
    model_calls: int
    cache_hits: int
    worker: str


class _NoCache:
    """The cache of ``--no-cache``: never hits, never stores."""

    def cache_get(self, key: str) -> str | None:
        return None

    def cache_put(self, key: str, backend: str, request: str, output: str) -> None:
        return None


class _Scorer:
    """The actor body (wrapped with ``ray.remote`` at run time, so Ray stays an optional import)."""

    def __init__(self, payload: tuple[Sequence[Evaluator], CandidateSpec | None, OutputsFile | None,
                                      dict[str, Any], StoreURL | None, int | None]) -> None:
        evaluators, candidate, outputs, identity, store_url, concurrency = payload
        self.evaluators = list(evaluators)
        self.candidate, self.outputs, self.identity = candidate, outputs, identity
        self.store = Store(store_url) if store_url is not None else None
        self.backend: CachedBackend | None = None
        if candidate is not None:
            inner = make_backend(candidate)
            if concurrency is not None and hasattr(inner, "concurrency"):
                inner.concurrency = concurrency  # this actor's share of the endpoint's limit
            self.backend = CachedBackend(inner, self.store if self.store is not None else _NoCache(),
                                         enabled=self.store is not None)
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self.loop = asyncio.new_event_loop()

    def score(self, shard: list[Example]) -> ShardResult:
        calls0 = self.backend.model_calls if self.backend else 0
        hits0 = self.backend.cache_hits if self.backend else 0
        scored = self.loop.run_until_complete(score_rows(
            shard, self.evaluators, candidate=self.candidate, backend=self.backend, outputs=self.outputs,
            candidate_identity=self.identity))
        return ShardResult(rows=[(r.example.id, r.outputs, r.errors, r.scores) for r in scored],
                           model_calls=(self.backend.model_calls - calls0) if self.backend else 0,
                           cache_hits=(self.backend.cache_hits - hits0) if self.backend else 0,
                           worker=self.name)

    def pid(self) -> int:
        return os.getpid()


def shard_rows(plan: RunPlan, pending: Sequence[Example], batch: int) -> list[list[Example]]:
    """The pending rows cut as the local executor cuts them (shortest prompts first, ``batch`` a shard)."""
    rows = list(pending)
    if plan.candidate is not None:
        cand = plan.candidate
        sizes = {ex.id: prompt_size(cand, ex) for ex in rows}
        rows.sort(key=lambda ex: sizes[ex.id])
    size = max(1, batch)
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError("--executor ray needs Ray: pip install 'tunegate[ray]'", field="executor") from None
    return ray


def _init(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    addr = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=addr, include_dashboard=False, log_to_driver=False, configure_logging=False)


def _lost_worker_errors(ray: Any) -> tuple[type[BaseException], ...]:
    ex = ray.exceptions
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
             "ActorUnavailableError", "LocalRayletDiedError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def run_plan_ray(plan: RunPlan, store: Store, *, resume: bool = False, use_cache: bool = True,
                 progress: ProgressHook | None = None, options: RayOptions | None = None) -> RunSummary:
    """Run ``plan`` into ``store`` with Ray workers; the same summary as the local executor's."""
    opts = options or RayOptions()
    ray = _ray()
    t0 = time.perf_counter()
    run_id, resumed = open_run(plan, store, resume=resume)
    done = store.done_rows(run_id)
    seq_of = {ex.id: i for i, ex in enumerate(plan.rows)}
    pending = [ex for ex in plan.rows if ex.id not in done]
    batch = 64
    endpoint_limit: int | None = None
    if plan.candidate is not None:
        probe = make_backend(plan.candidate)  # cheap: backends load models and connect on first use
        batch = probe.max_batch
        endpoint_limit = opts.endpoint_concurrency or getattr(probe, "concurrency", None)
    shards: deque[list[Example]] = deque(shard_rows(plan, pending, batch))
    n_done, total = len(done), len(plan.rows)
    if progress:
        progress(n_done, total)
    workers_used: set[str] = set()
    if shards:
        _init(ray, opts.address)
        cpus = int(ray.cluster_resources().get("CPU", 1) // max(opts.cpus_per_worker, 0.01)) or 1
        n_workers = max(1, min(opts.workers or cpus, len(shards)))
        per_actor = max(1, endpoint_limit // n_workers) if endpoint_limit else None
        if endpoint_limit and endpoint_limit < n_workers:
            n_workers = endpoint_limit  # never more in-flight requests than the endpoint allows
        identity = plan.candidate.identity() if plan.candidate else {"outputs": plan.candidate_hash}
        payload = ray.put((list(plan.evaluators), plan.candidate, plan.outputs, identity,
                           store.url if use_cache else None, per_actor))
        Scorer = ray.remote(num_cpus=opts.cpus_per_worker, max_restarts=0)(_Scorer)
        actors = [Scorer.remote(payload) for _ in range(n_workers)]
        try:
            n_done = _drive(ray, store, run_id, seq_of, actors, shards, lambda: Scorer.remote(payload),
                            n_done, total, progress, workers_used)
        finally:
            for a in actors:
                ray.kill(a)
    store.finish_run(run_id)
    rec = store.run(run_id)
    rows = store.rows(run_id)
    per_row: list[dict[str, Sequence[EvalResult]]] = [dict(r.scores) for r in rows]
    summary = summarise(per_row, [e.name for e in plan.evaluators])
    return RunSummary(run_id=run_id, rows=len(rows), model_calls=rec.model_calls, cache_hits=rec.cache_hits,
                      evaluators=summary, resumed=resumed, rows_this_session=len(pending),
                      wall_s=time.perf_counter() - t0, errors=sum(1 for r in rows if r.error),
                      extra={"dataset_hash": plan.dataset.hash, "candidate_hash": plan.candidate_hash,
                             "executor": "ray", "ray_workers": sorted(workers_used)})


def _drive(ray: Any, store: Store, run_id: str, seq_of: dict[str, int], actors: list[Any],
           shards: deque[list[Example]], new_actor: Any, n_done: int, total: int,
           progress: ProgressHook | None, workers_used: set[str]) -> int:
    """Keep every live actor two shards deep, commit each shard as it returns, re-queue lost shards."""
    lost = _lost_worker_errors(ray)
    committed = store.done_rows(run_id)
    alive = set(range(len(actors)))
    attempts: dict[int, int] = {}
    inflight: dict[Any, tuple[int, list[Example]]] = {}

    def fill() -> None:
        for k in sorted(alive):
            while shards and sum(1 for v in inflight.values() if v[0] == k) < 2:
                shard = shards.popleft()
                inflight[actors[k].score.remote(shard)] = (k, shard)

    fill()
    while inflight:
        (ref,), _ = ray.wait(list(inflight), num_returns=1)
        k, shard = inflight.pop(ref)
        try:
            res: ShardResult = ray.get(ref)
        except lost as e:
            # The worker (or its node) died with this shard: nothing of it was committed. Score it again
            # on a surviving actor; start a new one only when none survives (Ray places it where it fits).
            attempts[id(shard)] = attempts.get(id(shard), 1) + 1
            if attempts[id(shard)] > MAX_SHARD_ATTEMPTS:
                raise TunegateError(f"a shard of {len(shard)} rows was lost with its worker {MAX_SHARD_ATTEMPTS} "
                                    f"times (last: {str(e).strip()[:300]}); the run {run_id} continues with "
                                    "--resume") from None
            alive.discard(k)
            shards.appendleft(shard)
            if not alive:
                actors[k] = new_actor()
                alive.add(k)
            fill()
            continue
        except ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        commit_rows(store, run_id, seq_of, res, committed)
        workers_used.add(res.worker)
        n_done += len(res.rows)
        if progress:
            progress(n_done, total)
        fill()
    return n_done


def commit_rows(store: Store, run_id: str, seq_of: dict[str, int], res: ShardResult, done: set[str]) -> None:
    """One transaction per row, the shard's model calls and cache hits on its first row (as locally).

    A row already committed (its shard was scored twice after a lost worker reply) is skipped;
    ``done`` (the run's committed row ids) is updated as rows are written.
    """
    first = True
    for rid, outs, errs, scores in res.rows:
        if rid in done:
            continue
        by_eval: dict[str, Sequence[EvalResult]] = dict(scores)
        store.write_row(run_id, rid, seq_of[rid], outs, errs, by_eval,
                        model_calls=res.model_calls if first else 0, cache_hits=res.cache_hits if first else 0,
                        error=next((e for e in errs if e), None))
        done.add(rid)
        first = False
