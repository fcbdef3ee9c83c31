"""Exact response cache, scoped by the full candidate identity (opt-in per route).

The key is the SHA-256 of the candidate hash (backend, base model, adapter digest, prompt content,
decoding params) and the prepared upstream body (messages after the prompt version was applied,
tools, explicit params, ``n``). A tuned candidate therefore never receives the base's cached
answer, and a prompt label moved to new text starts a new cache. In memory, LRU-bounded: a cache
hit serves exactly what the upstream once answered, so it never expires on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

__all__ = ["ResponseCache", "cache_key"]

_VOLATILE = frozenset({"stream", "stream_options", "user"})


def cache_key(candidate_hash: str, body: dict[str, Any]) -> str:
    stable = {k: v for k, v in body.items() if k not in _VOLATILE}
    text = json.dumps([candidate_hash, stable], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: str, completion: dict[str, Any]) -> None:
        self._items[key] = completion
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
