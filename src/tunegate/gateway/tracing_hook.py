"""Gateway spans: one span per client request, built from its :class:`RequestRecord`.

A request hook (off the request path) turns each finished record into an LLM span with the real
start time and duration, the served arm's model, tokens, cost, finish reason, cohort, prompt version
and candidate — plus a child span per upstream attempt (retries, fallbacks: their outcomes and
latencies) and per guardrail that fired. Shadow calls get their own span (``tunegate.source =
shadow``) under the request's; evaluator results from online scoring arrive later and are attached
as an EVALUATOR child span carrying ``gen_ai.evaluation.result`` events (the evaluated span has
ended by then). Nothing here runs before the client has its answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.gateway.records import RequestRecord
from tunegate.tracing import EvalEvent, LLMCall, SpanSink, Tracing

if TYPE_CHECKING:
    from tunegate.gateway.mirror import ShadowResult
    from tunegate.gateway.service import Gateway

__all__ = ["GatewayTracing", "store_sink"]


def store_sink(db: str | Path | None) -> SpanSink:
    """A span sink writing to the tunegate store, opened on the exporter's own thread."""
    from tunegate.store import online as q
    from tunegate.store.sqlite import Store

    local = threading.local()

    def sink(rows: list[dict[str, Any]]) -> None:
        store = getattr(local, "store", None)
        if store is None:
            store = local.store = Store(db)
        q.insert_spans(store, rows)

    return sink


def evaluation_events(scores: dict[str, dict[str, Any]]) -> list[EvalEvent]:
    return [EvalEvent(name, s.get("score"), s.get("passed"), str(s.get("reason") or ""), str(s.get("status", "ok")))
            for name, s in scores.items()]


class GatewayTracing:
    """Request hook + helpers that emit the gateway's spans through a :class:`Tracing`."""

    def __init__(self, tracing: Tracing, *, remember: int = 10_000) -> None:
        self.tracing = tracing
        self.gw: Gateway | None = None
        self._spans: OrderedDict[str, tuple[Any, LLMCall]] = OrderedDict()
        self._remember = remember

    def attach(self, gw: Gateway) -> GatewayTracing:
        self.gw = gw
        gw.request_hooks.append(self.on_request)
        return self

    def _call(self, rec: RequestRecord, arm: str | None, source: str) -> LLMCall:
        gw = self.gw
        model, provider, prompt = "unknown", "openai", rec.prompt_version
        if gw is not None and gw.snap is not None and arm is not None:
            spec = gw.snap.specs.get(rec.route, {}).get(arm)
            up = gw.snap.upstreams.get(rec.route, {}).get(arm)
            if spec is not None:
                provider = "tunegate.local" if spec.backend == "local" else "openai"
                prompt = prompt or spec.prompt.ref
            if up is not None:
                model = up.model
        return LLMCall(request_model=model, provider=provider, source=source, candidate_id=rec.candidate_hash,
                       prompt_version=prompt, route=rec.route, arm=arm, cohort=rec.cohort, request_id=rec.request_id,
                       input_messages=list(rec.request.get("messages") or []), params=rec.request)

    async def on_request(self, rec: RequestRecord) -> None:
        from opentelemetry.trace import Status, StatusCode

        call = self._call(rec, rec.arm or rec.chosen_arm, "gateway")
        start = int(rec.started_at * 1e9)
        end = start + int(rec.latency_ms * 1e6)
        tracer = self.tracing.tracer
        span = tracer.start_span(f"chat {rec.route}", start_time=start,
                                 attributes=_attrs(self.tracing, call))
        cost_in = cost_out = None
        if self.gw is not None and self.gw.snap is not None and rec.arm is not None:
            route = self.gw.snap.config.route(rec.route)
            if route is not None and rec.arm in route.arms:
                price = route.arms[rec.arm].price
                cost_in, cost_out = rec.tokens_in * price.input_per_1m / 1e6, rec.tokens_out * price.output_per_1m / 1e6
        from tunegate.tracing.attributes import response_attributes

        span.set_attributes(response_attributes(
            response_model=call.request_model, input_tokens=rec.tokens_in, output_tokens=rec.tokens_out,
            finish_reasons=[rec.finish_reason] if rec.finish_reason else None, cost_prompt=cost_in,
            cost_completion=cost_out, output_text=rec.response_text,
            capture_content=self.tracing.config.capture_content, redact=self.tracing.config.redact))
        span.set_attributes({"tunegate.status": rec.status, "http.response.status_code": rec.http_status,
                             "tunegate.attempts": len(rec.attempts), "tunegate.cached": rec.cached})
        if rec.chosen_arm and rec.chosen_arm != rec.arm:
            span.set_attribute("tunegate.rollout.chosen_arm", rec.chosen_arm)
        if rec.status != "ok":
            span.set_status(Status(StatusCode.ERROR, (rec.error or rec.status)[:300]))
        from opentelemetry import trace

        ctx = trace.set_span_in_context(span)
        t = start
        for i, a in enumerate(rec.attempts):
            dur = int(a.latency_ms * 1e6)
            child = tracer.start_span(f"attempt {a.arm}", context=ctx, start_time=t, attributes={
                "openinference.span.kind": "LLM", "tunegate.rollout.arm": a.arm, "tunegate.attempt": i,
                "tunegate.candidate.id": a.candidate_hash, "tunegate.attempt.outcome": a.outcome,
                "tunegate.source": "attempt"})
            if a.outcome not in ("ok", "cache_hit"):
                child.set_status(Status(StatusCode.ERROR, a.outcome))
            child.end(end_time=t + dur)
            t += dur
        for g in rec.guardrail_events:
            gs = tracer.start_span(f"guardrail {g.check}", context=ctx, start_time=start, attributes={
                "openinference.span.kind": "GUARDRAIL", "tunegate.guardrail.check": g.check,
                "tunegate.guardrail.stage": g.stage, "tunegate.guardrail.action": g.action,
                "tunegate.route": rec.route})
            gs.end(end_time=start)
        span.end(end_time=max(end, start))
        self._spans[rec.request_id] = (span, call)
        while len(self._spans) > self._remember:
            self._spans.popitem(last=False)

    def evaluations(self, request_id: str, scores: dict[str, dict[str, Any]], *, arm: str | None = None) -> None:
        """Evaluator results for a request's answer, as an EVALUATOR child span (None if forgotten)."""
        hit = self._spans.get(request_id)
        if hit is None or not scores:
            return
        span, call = hit
        ev_call = call if arm is None or arm == call.arm else LLMCall(**{**call.__dict__, "arm": arm})
        self.tracing.evaluation_span(ev_call, evaluation_events(scores), parent=span)

    def shadow(self, res: ShadowResult, scores: dict[str, dict[str, Any]] | None) -> None:
        """The shadow call of a mirrored request, under the request's span, with its evaluations."""
        hit = self._spans.get(res.record.request_id)
        base = self._call(res.record, res.arm, "shadow")
        base.candidate_id, base.prompt_version = res.candidate_hash, res.prompt_version
        with self.tracing.llm_span(base, name=f"shadow {res.record.route}",
                                   parent=hit[0] if hit else None) as sp:
            if res.completion is not None:
                usage = res.completion.get("usage") or {}
                choices = res.completion.get("choices") or [{}]
                sp.set_response(response_model=res.completion.get("model"), input_tokens=usage.get("prompt_tokens"),
                                output_tokens=usage.get("completion_tokens"),
                                finish_reasons=[str(c.get("finish_reason")) for c in choices if c.get("finish_reason")])
            else:
                sp.error(res.error or "shadow failed")
            for ev in evaluation_events(scores or {}):
                sp.add_evaluation(ev)


def _attrs(tracing: Tracing, call: LLMCall) -> dict[str, Any]:
    from tunegate.tracing.attributes import llm_attributes

    return dict(llm_attributes(call, capture_content=tracing.config.capture_content, redact=tracing.config.redact))
