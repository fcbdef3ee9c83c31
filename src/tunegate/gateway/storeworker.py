"""The gateway's one store connection, on its own thread, and the batched request log.

SQLite connections belong to the thread that opened them and a write can wait on a lock, so every
store access of the gateway (rollout polling, prompt-label resolution, request log) runs on one
dedicated thread, never on the event loop. The request log is a bounded queue drained in batches
(``log_batch`` records or every ``log_flush_s`` seconds); when the store is gone or slow the
records are dropped and counted — a client request never waits for, or fails because of, the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tunegate.gateway.metrics import Metrics
from tunegate.gateway.records import RequestRecord
from tunegate.store.sqlite import Store

__all__ = ["RequestLog", "StoreWorker", "log_row"]

_log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreWorker:
    """Runs ``fn(store, ...)`` on the store thread; the Store is opened there on first use."""

    def __init__(self, db: str | Path | None) -> None:
        self.db = db
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunegate-gw-store")
        self._store: Store | None = None

    def _with_store(self, fn: Callable[..., T], *args: Any) -> T:
        if self._store is None:
            self._store = Store(self.db)
        return fn(self._store, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._with_store, fn, *args)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=False)


def log_row(rec: RequestRecord) -> dict[str, Any]:
    """The ``gateway_requests`` row of a record."""
    from datetime import UTC, datetime

    return {"request_id": rec.request_id, "route": rec.route, "arm": rec.arm, "chosen_arm": rec.chosen_arm,
            "candidate_hash": rec.candidate_hash, "prompt_version": rec.prompt_version, "cohort": rec.cohort,
            "api_key": rec.api_key, "status": rec.status, "http_status": rec.http_status, "error": rec.error,
            "latency_ms": round(rec.latency_ms, 3), "tokens_in": rec.tokens_in, "tokens_out": rec.tokens_out,
            "cost": rec.cost, "cached": int(rec.cached),
            "attempts": json.dumps([a.__dict__ for a in rec.attempts]),
            "guardrails": json.dumps([g.__dict__ for g in rec.guardrail_events]),
            "created_at": datetime.fromtimestamp(rec.started_at, UTC).isoformat(timespec="milliseconds")}


class RequestLog:
    """Bounded queue of finished records → store batches + request hooks (see the module docstring)."""

    def __init__(self, worker: StoreWorker | None, metrics: Metrics, *, batch: int, flush_s: float,
                 hooks: list[Any], max_queue: int = 100_000) -> None:
        self.worker = worker
        self.metrics = metrics
        self.batch = batch
        self.flush_s = flush_s
        self.hooks = hooks
        self._queue: asyncio.Queue[RequestRecord] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tunegate-gw-request-log")

    def put(self, rec: RequestRecord) -> None:
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            self.metrics.log_dropped.inc()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = asyncio.get_running_loop().time() + self.flush_s
            while len(batch) < self.batch:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            await self._flush(batch)

    async def _flush(self, batch: list[RequestRecord]) -> None:
        if self.worker is not None:
            from tunegate.store.release import log_requests

            try:
                await self.worker.call(log_requests, [log_row(r) for r in batch])
                self.written += len(batch)
            except Exception as e:  # the store is gone, locked or full: serve on, count the loss
                _log.warning("request log: %d records not written: %s", len(batch), type(e).__name__)
                self.metrics.store_failures.labels("request_log").inc()
                self.metrics.log_dropped.inc(len(batch))
        for rec in batch:
            for hook in self.hooks:
                try:
                    await hook(rec)
                except Exception:
                    _log.exception("request hook %r failed", hook)
                    self.metrics.hook_errors.inc()

    async def drain(self) -> None:
        """Write what is queued (used at shutdown and by tests)."""
        batch: list[RequestRecord] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._flush(batch)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.drain()
