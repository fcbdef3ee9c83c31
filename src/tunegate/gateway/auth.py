"""Gateway API keys (SHA-256 at rest), per-key request rate limits and daily token budgets.

A key is looked up by the SHA-256 of the presented bearer token, so the configuration and the
process hold only hashes. Limits are per gateway process (in memory): ``rpm`` is a token bucket
refilled continuously; ``tokens_per_day`` counts prompt + completion tokens per UTC day and is
checked before the call (a request that starts under budget may finish over it, as OpenAI's own
limits do). Refusals carry a ``Retry-After`` in seconds.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from tunegate.gateway.config import AuthConfig, KeyConfig

__all__ = ["AuthResult", "Limiter", "hash_key"]


def hash_key(key: str) -> str:
    """Hex SHA-256 of a gateway key (what ``gateway.yaml`` stores)."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


@dataclass(frozen=True)
class AuthResult:
    key: KeyConfig | None
    status: int = 200  #: 401 no/unknown key, 403 route not allowed, 429 limited
    message: str = ""
    code: str = ""
    retry_after: float | None = None


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level, self.stamp = level, stamp


class Limiter:
    """Authenticates requests and applies per-key limits (see the module docstring)."""

    def __init__(self, auth: AuthConfig | None) -> None:
        self.auth = auth
        self._by_hash = {k.sha256: k for k in auth.keys} if auth else {}
        self._buckets: dict[str, _Bucket] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # key name -> (utc day, tokens used)

    def check(self, authorization: str | None, route: str) -> AuthResult:
        if self.auth is None:
            return AuthResult(None)
        if not authorization or not authorization.lower().startswith("bearer "):
            return AuthResult(None, 401, "missing gateway API key: send 'Authorization: Bearer <key>'",
                              "missing_api_key")
        key = self._by_hash.get(hash_key(authorization[7:]))
        if key is None:
            return AuthResult(None, 401, "invalid gateway API key", "invalid_api_key")
        if key.routes is not None and route not in key.routes:
            return AuthResult(key, 403, f"key {key.name!r} may not use model {route!r}", "model_not_allowed")
        now = time.monotonic()
        if key.rpm is not None:
            b = self._buckets.get(key.name)
            if b is None:
                b = self._buckets[key.name] = _Bucket(float(key.rpm), now)
            b.level = min(float(key.rpm), b.level + (now - b.stamp) * key.rpm / 60.0)
            b.stamp = now
            if b.level < 1.0:
                wait = (1.0 - b.level) * 60.0 / key.rpm
                return AuthResult(key, 429, f"rate limit of {key.rpm} requests per minute reached for key "
                                  f"{key.name!r}", "rate_limit_exceeded", retry_after=wait)
            b.level -= 1.0
        if key.tokens_per_day is not None:
            day, used = self._tokens.get(key.name, (0, 0))
            today = int(time.time() // 86400)
            if day != today:
                used = 0
            if used >= key.tokens_per_day:
                wait = (today + 1) * 86400 - time.time()
                return AuthResult(key, 429, f"daily token budget of {key.tokens_per_day} reached for key "
                                  f"{key.name!r}", "token_budget_exceeded", retry_after=wait)
        return AuthResult(key)

    def spend(self, key: KeyConfig | None, tokens: int) -> None:
        """Count tokens against the key's daily budget."""
        if key is None or key.tokens_per_day is None or tokens <= 0:
            return
        today = int(time.time() // 86400)
        day, used = self._tokens.get(key.name, (today, 0))
        self._tokens[key.name] = (today, (used if day == today else 0) + tokens)
