"""Prometheus metrics of one gateway (its own registry: two gateways in one process never share counters)."""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters and histograms named ``tunegate_gateway_*``; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunegate_gateway_requests", "Client requests by route, arm and status.",
                                ["route", "arm", "status"], registry=r)
        self.attempts = Counter("tunegate_gateway_upstream_attempts", "Upstream calls by outcome.",
                                ["route", "arm", "outcome"], registry=r)
        self.latency = Histogram("tunegate_gateway_request_seconds", "Client request latency (to the last byte).",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tunegate_gateway_tokens", "Tokens by route, arm and direction.",
                              ["route", "arm", "direction"], registry=r)
        self.guardrails = Counter("tunegate_gateway_guardrail_events", "Guardrails that fired.",
                                  ["route", "check", "action"], registry=r)
        self.cache_hits = Counter("tunegate_gateway_cache_hits", "Exact-cache hits.", ["route", "arm"], registry=r)
        self.store_failures = Counter("tunegate_gateway_store_failures",
                                      "Store writes/reads that failed (requests were still served).",
                                      ["operation"], registry=r)
        self.log_dropped = Counter("tunegate_gateway_log_dropped", "Request-log records dropped.", registry=r)
        self.hook_errors = Counter("tunegate_gateway_hook_errors", "Request hooks that raised.", registry=r)
        self.reloads = Counter("tunegate_gateway_reloads", "Rollout/config reloads applied.", ["kind"], registry=r)
        self.mirror_dropped = Counter("tunegate_gateway_mirror_dropped",
                                      "Requests not mirrored because the route's mirror queue was full.",
                                      ["route"], registry=r)
        self.scoring_dropped = Counter("tunegate_gateway_scoring_dropped",
                                       "Answers not scored online because the route's scoring backlog was full "
                                       "(kind: live or pair).", ["route", "kind"], registry=r)
        self.scoring_pending = Gauge("tunegate_gateway_scoring_pending",
                                     "Answers waiting for or in online scoring, per route.", ["route"], registry=r)
        self.share = Gauge("tunegate_gateway_arm_share_percent", "Effective traffic share per arm.",
                           ["route", "arm"], registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def set_shares(self, shares: dict[str, dict[str, float]]) -> None:
        for route, arms in shares.items():
            for arm, pct in arms.items():
                self.share.labels(route, arm).set(pct)

    def count(self, name: str, *labels: Any, n: float = 1.0) -> None:
        getattr(self, name).labels(*labels).inc(n)
