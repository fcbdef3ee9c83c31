"""What the gateway tells the outside about each request: records and hooks.

A :class:`RequestRecord` is built once per client request, after the response (or the error) has
been sent. The request log, Prometheus metrics and any registered :data:`RequestHook` (the release
controller's online scoring, mirroring) all read the same record, so they never disagree about
which arm served a request. Hooks run off the request path: a slow or failing hook never delays or
fails a client request (failures are counted in ``tunegate_gateway_hook_errors_total``).

A :data:`SpanHook` wraps every upstream attempt (primary, retries, fallbacks). It is an async
context manager factory: ``async with span_hook(info): ...``. The default is a no-op; tracing
plugs OpenTelemetry spans in here without the gateway importing opentelemetry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "GuardrailEvent",
    "RequestHook",
    "RequestRecord",
    "SpanHook",
    "SpanInfo",
    "noop_span",
]

Status = Literal["ok", "error", "blocked", "rate_limited"]


@dataclass(frozen=True)
class Attempt:
    """One upstream call made for a request (the chosen arm, a retry, or a fallback)."""

    arm: str
    candidate_hash: str
    outcome: str  #: ok | http_<status> | timeout | connection | invalid_json | post_check | guardrail
    latency_ms: float
    detail: str = ""


@dataclass(frozen=True)
class GuardrailEvent:
    """A guardrail that fired: where (pre/post), which check, what it did."""

    stage: Literal["pre", "post"]
    check: str  #: evaluator or built-in check name (pii, prompt_injection, content_safety, json_validation)
    action: str  #: block | redact | flag | fallback
    detail: str = ""


@dataclass
class RequestRecord:
    """Everything known about one finished client request (see the module docstring).

    ``request`` holds the messages and parameters *as the client sent them* (after pre-call
    redaction when a redact guardrail fired); ``response_text``/``tool_calls`` are what the client
    received. ``arm``/``candidate_hash``/``prompt_version`` name the upstream that produced the
    answer (after fallbacks); ``chosen_arm`` is where routing first sent it.
    """

    request_id: str
    route: str
    arm: str | None
    chosen_arm: str | None
    candidate_hash: str | None
    prompt_version: str | None
    cohort: str | None
    api_key: str | None  #: the gateway key's *name* (never the key)
    sticky_key: str | None
    request: dict[str, Any]
    stream: bool
    status: Status
    http_status: int
    error: str | None = None
    response_text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cached: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    guardrail_events: list[GuardrailEvent] = field(default_factory=list)
    started_at: float = 0.0  #: unix time the request arrived

    @property
    def fallback_attempts(self) -> int:
        """Upstream attempts beyond the first."""
        return max(0, len(self.attempts) - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Called (awaited) once per finished request, in the gateway's event loop, off the request path.
RequestHook = Callable[[RequestRecord], Awaitable[None]]


@dataclass(frozen=True)
class SpanInfo:
    """What a span around one upstream attempt is about."""

    request_id: str
    route: str
    arm: str
    candidate_hash: str
    model: str
    attempt: int  #: 0 for the first upstream call of the request
    stream: bool
    shadow: bool = False  #: a mirrored (shadow) call whose answer never reaches the client
    attributes: dict[str, Any] = field(default_factory=dict)  #: filled by the gateway after the call


SpanHook = Callable[[SpanInfo], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _noop(info: SpanInfo) -> AsyncIterator[None]:
    yield


def noop_span(info: SpanInfo) -> AbstractAsyncContextManager[None]:
    """The default :data:`SpanHook`: does nothing."""
    return _noop(info)
