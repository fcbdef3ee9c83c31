"""Tracing without global state: a :class:`Tracing` object owns its own TracerProvider.

``Tracing(TracingConfig(...), sink=...)`` exports to the span store (``sink``) and/or an
OTLP/HTTP collector (Phoenix, Jaeger, any OTel collector). Nothing is registered globally (no
``set_tracer_provider``): two gateways or a test and a gateway never share spans by accident.
``opentelemetry`` is imported on construction only (extra ``otel``).

Usage::

    tr = Tracing(TracingConfig(otlp_endpoint="http://127.0.0.1:6006/v1/traces"), sink=store_sink)
    with tr.llm_span(LLMCall(request_model="gpt-4o-mini", route="support", arm="tuned")) as sp:
        ...call the model...
        sp.set_response(response_model="gpt-4o-mini-2024", input_tokens=12, output_tokens=40,
                        finish_reasons=["stop"])
        sp.add_evaluation(EvalEvent("json_validation", 1.0, True))
    tr.shutdown()
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tunegate.errors import UserError
from tunegate.tracing.attributes import (
    EVALUATION_EVENT,
    EvalEvent,
    LLMCall,
    eval_event_attributes,
    llm_attributes,
    response_attributes,
)
from tunegate.tracing.redact import redact_text, scrub_attributes
from tunegate.tracing.spanstore import SpanSink, make_span_store_exporter

__all__ = ["LLMSpan", "Tracing", "TracingConfig"]


@dataclass(frozen=True)
class TracingConfig:
    """How spans are exported. ``from_env`` reads ``TUNEGATE_TRACE_*``."""

    span_store: bool = True                 #: write spans to the tunegate store (needs a sink)
    otlp_endpoint: str | None = None        #: e.g. http://127.0.0.1:6006/v1/traces
    capture_content: bool = False           #: message content in spans (redacted unless redact=False)
    redact: bool = True
    service_name: str = "tunegate"
    batch: bool = True                      #: BatchSpanProcessor (False: export synchronously, tests)

    @classmethod
    def from_env(cls) -> TracingConfig:
        env = os.environ

        def flag(name: str, default: bool) -> bool:
            v = env.get(name)
            if v is None:
                return default
            if v.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise UserError(f"expected 1/0/true/false, got {v!r}", field=name)
            return v.lower() in ("1", "true", "yes")

        return cls(span_store=flag("TUNEGATE_TRACE_STORE", True),
                   otlp_endpoint=env.get("TUNEGATE_OTLP_ENDPOINT") or None,
                   capture_content=flag("TUNEGATE_TRACE_CONTENT", False),
                   redact=flag("TUNEGATE_TRACE_REDACT", True))


class LLMSpan:
    """Handle on an open LLM span: fill in the response, attach evaluations and guardrails."""

    def __init__(self, tracing: Tracing, span: Any) -> None:
        self._tr, self.span = tracing, span

    def set_response(self, *, response_model: str | None = None, input_tokens: int | None = None,
                     output_tokens: int | None = None, finish_reasons: list[str] | None = None,
                     cost_prompt: float | None = None, cost_completion: float | None = None,
                     output_text: str | None = None, response_id: str | None = None) -> None:
        cfg = self._tr.config
        self.span.set_attributes(response_attributes(
            response_model=response_model, input_tokens=input_tokens, output_tokens=output_tokens,
            finish_reasons=finish_reasons, cost_prompt=cost_prompt, cost_completion=cost_completion,
            output_text=output_text, capture_content=cfg.capture_content, redact=cfg.redact,
            response_id=response_id))

    def set_attributes(self, attrs: dict[str, Any]) -> None:
        self.span.set_attributes(scrub_attributes({k: v for k, v in attrs.items() if v is not None}))

    def add_evaluation(self, ev: EvalEvent) -> None:
        self.span.add_event(EVALUATION_EVENT, eval_event_attributes(ev))

    def error(self, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_status(Status(StatusCode.ERROR, redact_text(message)[:500]))
        self.span.set_attribute("error.type", redact_text(message.split(":", 1)[0])[:100])

    def guardrail(self, check: str, stage: str, action: str, detail: str = "") -> None:
        """A guardrail that fired, as a child span (OpenInference kind GUARDRAIL)."""
        from opentelemetry import trace

        ctx = trace.set_span_in_context(self.span)
        with self._tr.tracer.start_as_current_span(f"guardrail {check}", context=ctx) as g:
            g.set_attributes({"openinference.span.kind": "GUARDRAIL", "tunegate.guardrail.check": check,
                              "tunegate.guardrail.stage": stage, "tunegate.guardrail.action": action,
                              "tunegate.guardrail.detail": redact_text(detail)[:500]})


class Tracing:
    """Owns a TracerProvider and its exporters (see the module docstring)."""

    def __init__(self, config: TracingConfig | None = None, *, sink: SpanSink | None = None,
                 exporters: list[Any] | None = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        except ImportError:
            raise UserError("tracing needs the otel extra: pip install 'tunegate[otel]'", field="tracing") from None
        self.config = cfg = config or TracingConfig()
        self.provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
        proc = BatchSpanProcessor if cfg.batch else SimpleSpanProcessor
        exps: list[Any] = list(exporters or [])
        if cfg.span_store and sink is not None:
            exps.append(make_span_store_exporter(sink))
        if cfg.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exps.append(OTLPSpanExporter(endpoint=cfg.otlp_endpoint))
        for e in exps:
            self.provider.add_span_processor(proc(e))
        self.tracer = self.provider.get_tracer("tunegate")

    @contextmanager
    def llm_span(self, call: LLMCall, name: str | None = None, parent: Any = None) -> Iterator[LLMSpan]:
        """One span around one model call; an exception marks it as an error and propagates."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        ctx = trace.set_span_in_context(parent) if parent is not None else None
        attrs = llm_attributes(call, capture_content=self.config.capture_content, redact=self.config.redact)
        span_name = name or f"{call.operation} {call.request_model}"
        with self.tracer.start_as_current_span(span_name, context=ctx, kind=SpanKind.CLIENT, attributes=attrs,
                                               record_exception=False, set_status_on_exception=False) as span:
            handle = LLMSpan(self, span)
            try:
                yield handle
            except BaseException as e:
                handle.error(f"{type(e).__name__}: {e}")
                raise

    def evaluation_span(self, call: LLMCall, events: list[EvalEvent], parent: Any = None) -> None:
        """Evaluator results that arrive after the evaluated span ended (online scoring): a child
        EVALUATOR span carrying the ``gen_ai.evaluation.result`` events and the call's identity."""
        from opentelemetry import trace

        ctx = trace.set_span_in_context(parent) if parent is not None else None
        attrs = llm_attributes(call, capture_content=False)
        attrs["openinference.span.kind"] = "EVALUATOR"
        with self.tracer.start_as_current_span("evaluate", context=ctx, attributes=attrs) as span:
            for ev in events:
                span.add_event(EVALUATION_EVENT, eval_event_attributes(ev))

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        self.provider.shutdown()
