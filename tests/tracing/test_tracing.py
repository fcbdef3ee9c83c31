"""Spans: one vocabulary (gen_ai.* + OpenInference + tunegate.*), content rules, span store, OTLP."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel extra")

from tunegate.store import online as q
from tunegate.store.sqlite import Store
from tunegate.tracing import (
    EvalEvent,
    LLMCall,
    Tracing,
    TracingConfig,
    llm_attributes,
    redact_text,
    summarize,
    window_ns,
)

CALL = LLMCall(request_model="smollm2", provider="openai", route="support", arm="tuned", cohort="json",
               candidate_id="cand-abc", prompt_version="support@v3", request_id="req-1",
               input_messages=[{"role": "user", "content": "mail me at ann@example.com, key sk-abcdefghijklmnop"}],
               params={"temperature": 0.2, "max_tokens": 64})


def test_attributes_carry_all_three_vocabularies_and_no_content_by_default() -> None:
    a = llm_attributes(CALL)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "smollm2" and a["llm.model_name"] == "smollm2"
    assert a["openinference.span.kind"] == "LLM"
    assert a["tunegate.route"] == "support" and a["tunegate.rollout.arm"] == "tuned"
    assert a["tunegate.prompt.version"] == "support@v3" and a["tunegate.candidate.id"] == "cand-abc"
    assert a["tunegate.cohort"] == "json" and a["gen_ai.request.temperature"] == 0.2
    assert not any("message" in k or k == "input.value" for k in a)


def test_content_when_enabled_is_redacted_and_keys_never_leave() -> None:
    a = llm_attributes(CALL, capture_content=True)
    text = str(a["llm.input_messages.0.message.content"])
    assert "ann@example.com" not in text and "[REDACTED:email]" in text
    assert "sk-abcdefghijklmnop" not in text and "[REDACTED:secret]" in text
    raw = llm_attributes(CALL, capture_content=True, redact=False)
    assert "ann@example.com" in str(raw["input.value"])
    assert redact_text("call +1 415 555 0100 or 123-45-6789") == "call [REDACTED:phone] or [REDACTED:ssn]"


def make(tmp_path: Path, **kw: Any) -> tuple[Tracing, Store]:
    store = Store(tmp_path / "t.db")
    return Tracing(TracingConfig(batch=False, **kw), sink=lambda rows: q.insert_spans(store, rows)), store


def test_span_store_rows_and_summary(tmp_path: Path) -> None:
    tr, store = make(tmp_path)
    for i, (arm, failed) in enumerate([("tuned", True), ("tuned", False), ("base", False)]):
        call = LLMCall(request_model="m-" + arm, route="support", arm=arm, cohort="json", request_id=f"r{i}",
                       prompt_version="p@v1", candidate_id=arm)
        with tr.llm_span(call) as sp:
            sp.set_attributes({"x-api-key": "sk-secretsecretsecret", "tunegate.extra": 1})
            sp.set_response(response_model="m-" + arm + "-0613", input_tokens=10, output_tokens=5,
                            finish_reasons=["stop"], cost_prompt=0.001, cost_completion=0.002)
            sp.add_evaluation(EvalEvent("json_validation", 0.0 if failed else 1.0, not failed, "bad json"))
            sp.add_evaluation(EvalEvent("pii", None, None, "", status="skipped"))
            if failed:
                sp.guardrail("json_validation", "post", "fallback", "invalid JSON")
    with pytest.raises(RuntimeError), tr.llm_span(LLMCall(request_model="m-tuned", route="support", arm="tuned")):
        raise RuntimeError("upstream 500")
    tr.shutdown()
    rows = q.span_rows(store)
    llm = [r for r in rows if r["kind"] == "LLM"]
    assert len(llm) == 4 and [r for r in rows if r["kind"] == "GUARDRAIL"]
    first = llm[0]
    assert first["model"] == "m-tuned" and first["response_model"] == "m-tuned-0613"
    assert first["input_tokens"] == 10 and first["cost"] == pytest.approx(0.003) and first["eval_failed"] == 1
    assert "x-api-key" not in first["attributes"] and "secretsecret" not in first["attributes"]
    assert '"gen_ai.evaluation.result"' in first["events"] and "gen_ai.evaluation.score.label" in first["events"]
    assert llm[-1]["status"] == "error"
    by_arm = {d["arm"]: d for d in summarize(rows, ["arm"])}
    assert by_arm["tuned"]["traces"] == 3 and by_arm["tuned"]["eval_fail_rate"] == 0.5
    assert by_arm["tuned"]["error_rate"] == pytest.approx(1 / 3) and by_arm["base"]["eval_fail_rate"] == 0.0
    assert by_arm["base"]["tokens_per_trace"] == 15 and by_arm["base"]["cost_per_trace"] == pytest.approx(0.003)
    assert by_arm["base"]["p50_ms"] is not None
    assert q.insert_spans(store, rows[:1]) == 0        # exporting a span twice stores it once
    with pytest.raises(ValueError):
        summarize(rows, ["nope"])
    with pytest.raises(ValueError):
        window_ns("ten minutes", 0)
    assert window_ns("2h", 10**13) == 10**13 - 7200 * 10**9


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length", 0))
        body = self.rfile.read(n)
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture()
def collector() -> Iterator[str]:
    _Collector.bodies = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1/traces"
    srv.shutdown()


def test_otlp_http_export_reaches_a_collector(tmp_path: Path, collector: str) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    tr = Tracing(TracingConfig(span_store=False, otlp_endpoint=collector, batch=False))
    with tr.llm_span(CALL) as sp:
        sp.set_response(response_model="smollm2", input_tokens=3, output_tokens=4, finish_reasons=["stop"])
    tr.shutdown()
    assert _Collector.bodies
    req = ExportTraceServiceRequest.FromString(_Collector.bodies[0])
    span = req.resource_spans[0].scope_spans[0].spans[0]
    attrs = {a.key: a.value for a in span.attributes}
    assert attrs["gen_ai.request.model"].string_value == "smollm2"
    assert attrs["gen_ai.usage.output_tokens"].int_value == 4
    assert [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]


def test_traces_command_groups_the_span_store(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from tunegate.cli.main import cli

    tr, store = make(tmp_path)
    for i in range(6):
        arm, prompt = ("tuned", "p@v2") if i % 2 else ("base", "p@v1")
        with tr.llm_span(LLMCall(request_model="m", route="support", arm=arm, cohort="json",
                                 prompt_version=prompt)) as sp:
            sp.set_response(input_tokens=4, output_tokens=6)
            sp.add_evaluation(EvalEvent("json_validation", 1.0, arm == "base"))
    tr.shutdown()
    store.close()
    run = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "traces", "--since", "1h", "--by", "model",
                                   "--by", "prompt_version", "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    groups = {g["prompt_version"]: g for g in out["groups"]}
    assert groups["p@v2"]["eval_fail_rate"] == 1.0 and groups["p@v1"]["eval_fail_rate"] == 0.0
    assert groups["p@v1"]["traces"] == 3 and groups["p@v1"]["tokens_per_trace"] == 10
    table = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "traces", "--by", "arm"])
    assert table.exit_code == 0 and "tuned" in table.output and "(6 spans)" in table.output
    from tunegate.cli.main import main

    assert main(["--db", str(tmp_path / "t.db"), "traces", "--by", "colour"]) == 2
    assert main(["--db", str(tmp_path / "t.db"), "traces", "--since", "soon"]) == 2
