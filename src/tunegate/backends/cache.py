"""Content-addressed cache around any backend: never expires, replays exactly.

The key is the SHA-256 of the backend identity (kind, model, URL, adapter digest) and the request
payload (rendered messages, tools, decoding params, sample index). Re-running an unchanged
candidate therefore makes zero model calls, and changing only a gate policy never re-generates.
Failed calls are not cached: a retry later may succeed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from tunegate.backends.base import Backend, GenerationRequest, GenerationResult
from tunegate.core.hashing import canonical_json
from tunegate.core.result import ModelOutput

__all__ = ["CacheStore", "CachedBackend", "cache_key"]


class CacheStore(Protocol):
    """Where cached outputs live (the SQLite store implements this)."""

    def cache_get(self, key: str) -> str | None: ...

    def cache_put(self, key: str, backend: str, request: str, output: str) -> None: ...


def cache_key(backend_identity: dict[str, Any], request: GenerationRequest) -> str:
    blob = canonical_json({"backend": backend_identity, "request": request.payload()})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedBackend:
    """Wraps a backend; counts real model calls and cache hits. ``enabled=False`` bypasses the cache."""

    def __init__(self, inner: Backend, cache: CacheStore, *, enabled: bool = True) -> None:
        self.inner = inner
        self.cache = cache
        self.enabled = enabled
        self.kind = inner.kind
        self.max_batch = inner.max_batch
        self.model_calls = 0
        self.cache_hits = 0
        self._identity = inner.identity()
        self._identity_json = canonical_json(self._identity)

    def identity(self) -> dict[str, Any]:
        return self._identity

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        misses: list[int] = []
        keys = [cache_key(self._identity, r) for r in requests]
        for i, k in enumerate(keys):
            hit = self.cache.cache_get(k) if self.enabled else None
            if hit is not None:
                results[i] = ModelOutput.model_validate_json(hit).model_copy(update={"cached": True})
                self.cache_hits += 1
            else:
                misses.append(i)
        if misses:
            fresh = await self.inner.generate([requests[i] for i in misses])
            self.model_calls += len(misses)
            for i, out in zip(misses, fresh, strict=True):
                results[i] = out
                if self.enabled and isinstance(out, ModelOutput):
                    self.cache.cache_put(keys[i], self._identity_json, canonical_json(requests[i].payload()),
                                         out.model_copy(update={"cached": False}).model_dump_json())
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        await self.inner.aclose()
