"""OpenTelemetry spans for model calls, offline and online, in one vocabulary.

* :mod:`.attributes` — ``gen_ai.*`` (OTel GenAI semantic conventions), OpenInference ``llm.*`` and
  ``tunegate.*`` attributes from one :class:`LLMCall`; evaluator results as
  ``gen_ai.evaluation.result`` events. Pure.
* :mod:`.redact` — content only when enabled, PII redacted, credentials never.
* :mod:`.spanstore` — the default exporter: span rows for the tunegate store (``tunegate traces``).
* :mod:`.tracer` — :class:`Tracing`, a TracerProvider owned by the caller (no global state),
  exporting to the span store and/or OTLP/HTTP (Phoenix or any collector).

``opentelemetry`` is imported only when a :class:`Tracing` is built (extra ``otel``).
"""

from tunegate.tracing.attributes import (
           EVALUATION_EVENT,
           EvalEvent,
           LLMCall,
           llm_attributes,
           response_attributes,
)
from tunegate.tracing.redact import redact_text, scrub_attributes
from tunegate.tracing.spanstore import SPAN_COLUMNS, SpanSink, span_row
from tunegate.tracing.summary import GROUP_KEYS, summarize, window_ns
from tunegate.tracing.tracer import LLMSpan, Tracing, TracingConfig

__all__ = ["EVALUATION_EVENT", "GROUP_KEYS", "SPAN_COLUMNS", "EvalEvent", "LLMCall", "LLMSpan", "SpanSink", "Tracing",
           "TracingConfig", "llm_attributes", "redact_text", "response_attributes", "scrub_attributes", "span_row", "summarize", "window_ns"]
