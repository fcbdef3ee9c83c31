"""The default exporter: finished spans become rows handed to a sink (the tunegate store).

``span_row`` flattens an OpenTelemetry ``ReadableSpan`` into a plain dict whose keys are the
``spans`` table's columns (the store layer writes it; tracing does not import the store). The
exporter is built by :func:`make_span_store_exporter` so ``opentelemetry`` is imported only when
tracing is switched on (extra ``otel``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SPAN_COLUMNS", "SpanSink", "make_span_store_exporter", "span_row"]

_log = logging.getLogger(__name__)

SPAN_COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "duration_ms", "status",
                "source", "route", "arm", "cohort", "model", "response_model", "prompt_version", "candidate",
                "request_id", "input_tokens", "output_tokens", "cost", "eval_failed", "attributes", "events")

#: Receives a batch of span rows (dicts keyed by SPAN_COLUMNS); called on the exporter's thread.
SpanSink = Callable[[list[dict[str, Any]]], None]


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def span_row(span: Any) -> dict[str, Any]:
    """One ``ReadableSpan`` as a row of the ``spans`` table."""
    attrs = {k: _plain(v) for k, v in (span.attributes or {}).items()}
    events = [{"name": e.name, "time_ns": e.timestamp, "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()}}
              for e in span.events]
    evals = [e["attributes"] for e in events if e["name"] == "gen_ai.evaluation.result"]
    labels = [str(e.get("gen_ai.evaluation.score.label")) for e in evals]
    judged = [lab for lab in labels if lab in ("pass", "fail")]
    ctx = span.context
    parent = span.parent
    start, end = int(span.start_time or 0), int(span.end_time or 0)
    return {
        "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name, "kind": attrs.get("openinference.span.kind"),
        "start_ns": start, "end_ns": end, "duration_ms": (end - start) / 1e6,
        "status": span.status.status_code.name.lower(),
        "source": attrs.get("tunegate.source"), "route": attrs.get("tunegate.route"),
        "arm": attrs.get("tunegate.rollout.arm"), "cohort": attrs.get("tunegate.cohort"),
        "model": attrs.get("gen_ai.request.model"), "response_model": attrs.get("gen_ai.response.model"),
        "prompt_version": attrs.get("tunegate.prompt.version"), "candidate": attrs.get("tunegate.candidate.id"),
        "request_id": attrs.get("tunegate.request.id"),
        "input_tokens": attrs.get("gen_ai.usage.input_tokens"), "output_tokens": attrs.get("gen_ai.usage.output_tokens"),
        "cost": attrs.get("llm.cost.total"),
        "eval_failed": (1 if "fail" in judged else 0) if judged else None,
        "attributes": json.dumps(attrs, sort_keys=True, default=str),
        "events": json.dumps(events, sort_keys=True, default=str),
    }


def make_span_store_exporter(sink: SpanSink) -> Any:
    """A ``SpanExporter`` that writes span rows through ``sink`` (failures are logged, never raised)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class SpanStoreExporter(SpanExporter):
        def __init__(self) -> None:
            self.failures = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                sink([span_row(s) for s in spans])
            except Exception as e:   # the span store must never break the traced code
                self.failures += 1
                _log.warning("span store: %d spans not written: %s", len(spans), e)
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return SpanStoreExporter()
