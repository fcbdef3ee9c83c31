"""Traffic mirroring: a sampled share of a route's primary traffic is replayed to a shadow candidate.

Off the request path by construction: the gateway calls request hooks only after the client has
its answer, and :meth:`Mirror.offer` only samples and ``put_nowait``\\ s into a bounded queue — when
the queue is full the request is dropped and counted (``dropped``, and
``tunegate_gateway_mirror_dropped`` in /metrics), never waited for. A fixed number
of worker tasks send the shadow calls with their own timeout; a shadow failure (error, timeout,
hang) is counted and reported as a pair with ``candidate_error``, and never touches the primary.
The shadow's reply is never returned to anyone but the scorer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunegate.gateway.records import RequestRecord, SpanInfo

if TYPE_CHECKING:
    from tunegate.gateway.service import Gateway

__all__ = ["Mirror", "MirrorStats", "ShadowResult", "sampled"]

_log = logging.getLogger(__name__)


def sampled(request_id: str, share: float) -> bool:
    """Deterministic sampling by request id (a retried request id is mirrored or not, consistently)."""
    if share >= 1.0:
        return True
    h = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < share


@dataclass
class MirrorStats:
    offered: int = 0
    enqueued: int = 0
    dropped: int = 0
    shadow_ok: int = 0
    shadow_failed: int = 0


@dataclass(frozen=True)
class ShadowResult:
    """A primary request and what the shadow candidate answered (or why it did not)."""

    record: RequestRecord
    arm: str
    candidate_hash: str
    prompt_version: str | None
    completion: dict[str, Any] | None
    error: str | None
    latency_ms: float


class Mirror:
    """Mirror ``share`` (0..1) of ``route``'s baseline-served traffic to ``arm``."""

    def __init__(self, gw: Gateway, route: str, arm: str, on_result: Callable[[ShadowResult], Awaitable[None]], *,
                 share: float = 1.0, queue_size: int = 1000, concurrency: int = 4, timeout_s: float = 30.0) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"mirror share must be within [0, 1], got {share}")
        self.gw, self.route, self.arm, self.share = gw, route, arm, share
        self.on_result = on_result
        self.timeout_s = timeout_s
        self.stats = MirrorStats()
        self._queue: asyncio.Queue[RequestRecord] = asyncio.Queue(maxsize=queue_size)
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"tunegate-mirror-{self.route}-{i}")
                       for i in range(self._concurrency)]

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    @property
    def queued(self) -> int:
        """Requests waiting or being shadowed/scored (0 = idle)."""
        return self._queue.qsize() + self._busy

    def offer(self, rec: RequestRecord) -> bool:
        """Sample and enqueue a finished primary request; never blocks. True when enqueued."""
        snap = self.gw.snap
        if snap is None or rec.route != self.route or rec.status != "ok" or (rec.response_text is None and not rec.tool_calls):
            return False
        route = snap.config.route(self.route)
        if route is None or rec.arm != route.baseline or self.arm not in snap.upstreams.get(self.route, {}):
            return False
        self.stats.offered += 1
        if not sampled(rec.request_id, self.share):
            return False
        try:
            self._queue.put_nowait(rec)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            self.gw.metrics.mirror_dropped.labels(self.route).inc()
            return False
        self.stats.enqueued += 1
        return True

    async def _worker(self) -> None:
        while True:
            rec = await self._queue.get()
            self._busy += 1
            try:
                res = await self._shadow(rec)
                await self.on_result(res)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug in scoring must not kill the worker
                _log.exception("mirror: result handling failed for %s: %s", rec.request_id, e)
            finally:
                self._busy -= 1
                self._queue.task_done()

    async def _shadow(self, rec: RequestRecord) -> ShadowResult:
        from tunegate.gateway.prepare import prepare_body

        snap = self.gw.snap
        assert snap is not None
        route = snap.config.route(self.route)
        assert route is not None
        up = snap.upstreams[self.route][self.arm]
        spec = snap.specs[self.route][self.arm]
        t = time.perf_counter()
        info = SpanInfo(rec.request_id, self.route, self.arm, up.candidate_hash, up.model, 0, False, shadow=True)
        done: dict[str, Any] | None = None
        err: str | None = None
        try:
            body = prepare_body({"model": self.route, **rec.request}, spec, up.model, route.json_schema)
            body.pop("stream", None)
            body.pop("stream_options", None)
            async with self.gw.span_hook(info):
                done = await asyncio.wait_for(up.complete(body, timeout_s=self.timeout_s), self.timeout_s)
                info.attributes.update({"usage": done.get("usage")})
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            err = f"timeout after {self.timeout_s:g}s"
        except Exception as e:
            err = f"{type(e).__name__}: {e}"[:500]
        if err is None:
            self.stats.shadow_ok += 1
        else:
            self.stats.shadow_failed += 1
        return ShadowResult(rec, self.arm, up.candidate_hash, spec.prompt.ref, done, err,
                            round((time.perf_counter() - t) * 1000, 3))
