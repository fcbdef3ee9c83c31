"""The rollout gateway: an OpenAI-compatible server that routes traffic only to released candidates.

``tunegate serve --config gateway.yaml`` runs :func:`create_app` under uvicorn. Modules:
``config`` (gateway.yaml), ``routing`` (rules, cohorts, sticky shares), ``release`` (verdict
checks, ``set_share``, audit), ``chat`` (attempts, fallbacks, post-checks), ``upstream``,
``guardrails``, ``cache``, ``auth``, ``storeworker`` (store thread, batched request log),
``metrics``, ``openapi``, ``app``, ``service``.

Seams for the release controller, tracing and dashboards (names are stable):

(a) **Request hooks** — ``Gateway.request_hooks: list[RequestHook]`` (also
    ``create_app(request_hooks=[...])``). Each hook is ``async def hook(rec: RequestRecord)``,
    awaited once per finished request, off the request path (after the response, in the request
    log's batches); exceptions are caught and counted. :class:`RequestRecord` carries request id,
    route, arm (and ``chosen_arm`` before fallbacks), candidate hash, prompt version, cohort, the
    request messages/params, response text, tool calls, status, error, latency ms, tokens in/out,
    cost, ``attempts`` (every upstream call, so ``fallback_attempts``) and ``guardrail_events``.
(b) **Span hook** — ``Gateway.span_hook: SpanHook`` (``create_app(span_hook=...)``): called as
    ``async with span_hook(SpanInfo(...)):`` around every upstream attempt; ``SpanInfo.attributes``
    gets ``usage`` after a successful call. Default :func:`noop_span`.
(c) **Upstreams** — ``gateway.snap.upstreams[route][arm]`` is an :class:`Upstream`;
    ``await up.complete(body, timeout_s=...)`` sends a shadow request (body = OpenAI request;
    use :func:`prepare_body` to apply the arm's prompt version), ``up.stream(...)`` streams.
(d) **Rollout state** — shares live in the store; :func:`set_share` (``store, route, arm,
    percent, actor, reason, evidence``) is the one writer (``tunegate rollout`` uses it; a
    controller rolls back with ``set_share(..., 0, ...)`` or :func:`rollback`). Running gateways
    re-read it every ``reload_s`` (:meth:`Gateway.refresh` forces one poll).
(e) **Dashboard data** — :func:`overview` (per route: arms, effective shares, traffic, history),
    also served as JSON at ``GET /v1/rollout``.

Importing this package does not import starlette/uvicorn (extra ``gateway``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunegate.gateway.records import (
    Attempt,
    GuardrailEvent,
    RequestHook,
    RequestRecord,
    SpanHook,
    SpanInfo,
    noop_span,
)
from tunegate.gateway.release import check_verdict, overview, promote, rollback, set_share

if TYPE_CHECKING:
    from tunegate.gateway.prepare import prepare_body
    from tunegate.gateway.service import Gateway
    from tunegate.gateway.upstream import Upstream, UpstreamError

__all__ = [
    "Attempt",
    "Gateway",
    "GuardrailEvent",
    "RequestHook",
    "RequestRecord",
    "SpanHook",
    "SpanInfo",
    "Upstream",
    "UpstreamError",
    "check_verdict",
    "create_app",
    "noop_span",
    "overview",
    "prepare_body",
    "promote",
    "rollback",
    "set_share",
]

_LAZY = {"create_app": "tunegate.gateway.app", "Gateway": "tunegate.gateway.service",
         "Upstream": "tunegate.gateway.upstream", "UpstreamError": "tunegate.gateway.upstream",
         "prepare_body": "tunegate.gateway.prepare"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


if TYPE_CHECKING:
    from tunegate.gateway.app import create_app
