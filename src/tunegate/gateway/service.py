"""The running gateway: configuration snapshot, upstreams, rollout state, reloads, hooks.

A request takes the current :class:`Snapshot` once, at its start, and uses it to the end, so a
reload (rollout change, prompt label moved, ``gateway.yaml`` edited) never changes a request in
flight and never drops one: the new snapshot is swapped in whole (one attribute assignment) and
old upstreams stay open. Rollout state is re-read every ``reload_s`` seconds from the store (the
``seq`` of the newest rollout event is the cheap change probe); the config file is re-read when its
modification time changes or on :meth:`Gateway.reload_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.core.candidate import CandidateSpec
from tunegate.gateway.auth import Limiter
from tunegate.gateway.cache import ResponseCache
from tunegate.gateway.config import GatewayConfig, load_gateway_config
from tunegate.gateway.metrics import Metrics
from tunegate.gateway.records import RequestHook, SpanHook, noop_span
from tunegate.gateway.release import RolloutState, load_rollout
from tunegate.gateway.storeworker import RequestLog, StoreWorker
from tunegate.gateway.upstream import Upstream, make_upstream
from tunegate.store.sqlite import Store

if TYPE_CHECKING:
    from tunegate.gateway.http1 import HTTP1Pool

__all__ = ["Gateway", "Snapshot", "resolve_specs"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Everything routing needs, immutable for the life of a request."""

    config: GatewayConfig
    specs: dict[str, dict[str, CandidateSpec]]  #: resolved candidates per route and arm
    hashes: dict[str, dict[str, str]]
    upstreams: dict[str, dict[str, Upstream]]
    state: RolloutState
    caches: dict[str, ResponseCache] = field(default_factory=dict)

    def effective_shares(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for route in self.config.routes:
            arms = {a: self.state.share(route.name, a, self.hashes[route.name][a])
                    for a in route.arms if a != route.baseline}
            arms[route.baseline] = max(0.0, 100.0 - sum(arms.values()))
            out[route.name] = arms
        return out


def resolve_specs(store: Store | None, specs: dict[str, dict[str, CandidateSpec]]) -> dict[str, dict[str, CandidateSpec]]:
    """Candidates with ``prompt: name@label`` filled from the prompt registry (others unchanged)."""
    from tunegate.prompts.resolve import is_resolved

    if all(is_resolved(s) for arms in specs.values() for s in arms.values()):
        return specs
    from tunegate.errors import UserError
    from tunegate.prompts import PromptRegistry, resolve_candidate

    if store is None:
        ref = next(s.prompt.ref for arms in specs.values() for s in arms.values() if not is_resolved(s))
        raise UserError(f"candidate prompt {ref!r} needs the prompt registry, but the gateway has no store",
                        field="--db")
    reg = PromptRegistry(store)
    return {r: {a: resolve_candidate(s, reg) for a, s in arms.items()} for r, arms in specs.items()}


def _load(store: Store | None, path: str) -> tuple[GatewayConfig, dict[str, dict[str, CandidateSpec]],
                                                  RolloutState]:
    cfg, raw = load_gateway_config(path)
    specs = resolve_specs(store, raw)
    hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
    cfg = cfg.model_copy(update={"candidate_hashes": hashes})
    state = load_rollout(store) if store is not None else RolloutState()
    return cfg, specs, state


def _poll(store: Store, path: str, seq: int, refs: bool) -> tuple[int, Any]:
    """(newest seq, new (cfg, specs, state) or None): reload only when rollout or prompt labels moved."""
    from tunegate.store.release import latest_seq

    now = latest_seq(store)
    if now == seq and not refs:
        return now, None
    return now, _load(store, path)


class Gateway:
    """One gateway process's state (the Starlette app holds one)."""

    def __init__(self, config_path: str | Path, *, db: str | Path | None = None, use_store: bool = True,
                 request_hooks: list[RequestHook] | None = None,
                 span_hook: SpanHook | None = None) -> None:
        self.config_path = str(config_path)
        self.db = db
        self.use_store = use_store
        #: Awaited once per finished request, off the request path (release controller, mirroring).
        self.request_hooks: list[RequestHook] = list(request_hooks or [])
        #: Wraps every upstream attempt (tracing); no-op by default.
        self.span_hook: SpanHook = span_hook or noop_span
        #: Cohorts the release controller rolled back, per (route, arm): they are served by the baseline.
        self.cohort_blocks: dict[tuple[str, str], frozenset[str]] = {}
        #: Awaited with each stored ``POST /v1/feedback`` row (gateway.feedback; the controller listens).
        self.feedback_hooks: list[Any] = []
        #: The release controller's live state (``ReleaseControl.status``) when one is attached.
        self.release_status: Callable[[], list[dict[str, Any]]] | None = None
        self.metrics = Metrics()
        self.snap: Snapshot | None = None
        self.limiter: Limiter | None = None
        self.worker: StoreWorker | None = None
        self.log: RequestLog | None = None
        self.pool: HTTP1Pool | None = None
        self._upstreams: dict[tuple[str, str, str], Upstream] = {}
        self._caches: dict[tuple[str, str], ResponseCache] = {}
        #: Upstreams no snapshot refers to any more (retired at, default grace, upstream), closed once
        #: no request can still be using them.
        self._retired: list[tuple[float, float, Upstream]] = []
        #: How long a retired upstream stays open; None: the longest a request or shadow may take.
        self.retire_grace_s: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._mtime = 0.0
        self.store_ok = True

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        from tunegate.gateway.http1 import HTTP1Pool

        self.pool = HTTP1Pool()
        if self.use_store:
            self.worker = StoreWorker(self.db)
            cfg, specs, state = await self.worker.call(_load, self.config_path)
        else:
            cfg, specs, state = await asyncio.to_thread(_load, None, self.config_path)
        self._mtime = _mtime(self.config_path)
        self._install(cfg, specs, state)
        assert self.snap is not None
        self.log = RequestLog(self.worker, self.metrics, batch=cfg.log_batch, flush_s=cfg.log_flush_s,
                              hooks=self.request_hooks)
        self.log.start()
        self._task = asyncio.create_task(self._reload_loop(), name="tunegate-gw-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.log is not None:
            await self.log.aclose()
        for up in self._upstreams.values():
            await up.aclose()
        await self.close_retired(everything=True)
        if self.pool is not None:
            await self.pool.aclose()
        if self.worker is not None:
            await self.worker.aclose()

    # -- snapshots ----------------------------------------------------------------------------------
    def _install(self, cfg: GatewayConfig, specs: dict[str, dict[str, CandidateSpec]], state: RolloutState) -> None:
        assert self.pool is not None
        ups: dict[str, dict[str, Upstream]] = {}
        caches: dict[str, ResponseCache] = {}
        live: set[tuple[str, str, str]] = set()
        cache_keys: set[tuple[str, str]] = set()
        for route in cfg.routes:
            ups[route.name] = {}
            for arm, spec in specs[route.name].items():
                key = (route.name, arm, spec.hash)
                live.add(key)
                if key not in self._upstreams:
                    self._upstreams[key] = make_upstream(arm, spec, self.pool)
                ups[route.name][arm] = self._upstreams[key]
            if route.cache:
                ck = (route.name, str(route.cache_size))
                cache_keys.add(ck)
                caches[route.name] = self._caches.setdefault(ck, ResponseCache(route.cache_size))
        self._retire(live, self.snap.config if self.snap is not None else cfg)
        self._caches = {k: c for k, c in self._caches.items() if k in cache_keys}
        hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
        if self.limiter is None or self.snap is None or self.snap.config.auth != cfg.auth:
            self.limiter = Limiter(cfg.auth)
        self.snap = Snapshot(cfg, specs, hashes, ups, state, caches)
        self.metrics.set_shares(self.snap.effective_shares())

    def _retire(self, live: set[tuple[str, str, str]], old: GatewayConfig) -> None:
        """Move upstreams of candidates no route serves any more to the retired list.

        Why not close them at once: a request that started on the previous snapshot may still be
        calling one (snapshots are immutable for a request's life). Why at all: each promoted prompt
        version or edited candidate makes a new upstream, and a local one holds a model in memory.
        """
        stale = [k for k in self._upstreams if k not in live]
        if not stale:
            return
        # the longest one request may take on the old config, and a mirror shadow's cap (600 s)
        grace = max([600.0, *((r.timeout_s + r.max_backoff_s) * r.attempt_budget for r in old.routes)])
        now = time.monotonic()
        for k in stale:
            self._retired.append((now, grace, self._upstreams.pop(k)))

    async def close_retired(self, *, everything: bool = False) -> int:
        """Close the retired upstreams whose grace has passed (all of them at shutdown); how many."""
        now, keep, closed = time.monotonic(), [], 0
        for since, default_grace, up in self._retired:
            grace = default_grace if self.retire_grace_s is None else self.retire_grace_s
            if everything or now - since >= grace:
                try:
                    await up.aclose()
                except Exception as e:  # one failing close must not keep the others open
                    _log.warning("gateway: closing a retired upstream failed: %s", e)
                closed += 1
            else:
                keep.append((since, default_grace, up))
        self._retired = keep
        return closed

    def set_state(self, state: RolloutState) -> None:
        """Swap in new rollout state (tests and the release controller may call it directly)."""
        assert self.snap is not None
        self.snap = Snapshot(self.snap.config, self.snap.specs, self.snap.hashes, self.snap.upstreams, state,
                             self.snap.caches)
        self.metrics.set_shares(self.snap.effective_shares())

    async def reload_config(self) -> None:
        """Re-read ``gateway.yaml`` (and candidates, prompt labels, rollout state) and swap it in."""
        if self.worker is not None:
            cfg, specs, state = await self.worker.call(_load, self.config_path)
        else:   # reading YAML and candidate files is blocking I/O: never on the serving loop
            cfg, specs, state = await asyncio.to_thread(_load, None, self.config_path)
        self._mtime = _mtime(self.config_path)
        self._install(cfg, specs, state)
        self.metrics.reloads.labels("config").inc()

    async def refresh(self) -> bool:
        """One poll: re-read rollout state (and prompt labels) from the store; True when it changed."""
        if self.worker is None or self.snap is None:
            return False
        has_refs = any(s.prompt.ref is not None for arms in self.snap.specs.values() for s in arms.values())
        try:
            _seq, loaded = await self.worker.call(_poll, self.config_path, self.snap.state.seq, has_refs)
        except Exception as e:  # a store outage never stops serving: keep the last known state
            _log.warning("gateway: rollout state not refreshed: %s", e)
            self.metrics.store_failures.labels("rollout_poll").inc()
            self.store_ok = False
            return False
        self.store_ok = True
        if loaded is None:
            return False
        cfg, specs, state = loaded
        changed = bool(state.shares != self.snap.state.shares or cfg.hash != self.snap.config.hash)
        if changed:
            self._mtime = _mtime(self.config_path)
            self._install(cfg, specs, state)
            self.metrics.reloads.labels("rollout").inc()
        else:
            self.snap = Snapshot(self.snap.config, self.snap.specs, self.snap.hashes, self.snap.upstreams,
                                 state, self.snap.caches)
        return changed

    async def _reload_loop(self) -> None:
        from tunegate.errors import UserError

        while True:
            assert self.snap is not None
            await asyncio.sleep(self.snap.config.reload_s)
            if self._retired:
                await self.close_retired()
            try:
                if _mtime(self.config_path) != self._mtime:
                    await self.reload_config()
                else:
                    await self.refresh()
            except UserError as e:  # a broken edit keeps the last good config serving
                _log.error("gateway: reload refused, still serving the previous config: %s", e)
                self._mtime = _mtime(self.config_path)
                self.metrics.reloads.labels("refused").inc()
            except Exception as e:
                _log.exception("gateway: reload failed: %s", e)
                self.metrics.reloads.labels("failed").inc()


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
