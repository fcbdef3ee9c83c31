"""Spans reach a real Phoenix over OTLP/HTTP and read back through Phoenix's own client.

Phoenix (``arize-phoenix``, extra ``phoenix``, installed by ``make install``/``make test``) is
started by the test on 127.0.0.1 with free ports and a temporary working directory, telemetry off.
Skips with a reason when Phoenix is not importable (an install without the extra).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel extra")
pytest.importorskip("phoenix.client", reason="Phoenix is not installed: pip install 'tunegate[phoenix]'")

from tests.support.polling import poll
from tunegate.tracing import EvalEvent, LLMCall, Tracing, TracingConfig

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import httpx

    work = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(_free_port()), "PHOENIX_WORKING_DIR": str(work),
           "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_ENABLE_PROMETHEUS": "false"}
    log = (work / "phoenix.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "phoenix.server.main", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    def up_or_exited() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        if not poll(up_or_exited, tries=360, step_s=0.5):
            pytest.fail("Phoenix did not answer /healthz")
        if proc.poll() is not None:
            pytest.fail(f"Phoenix exited ({proc.returncode}): {(work / 'phoenix.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_spans_arrive_in_phoenix_with_genai_and_openinference_attributes(phoenix: str, tmp_path: Path) -> None:
    from phoenix.client import Client

    tr = Tracing(TracingConfig(span_store=False, otlp_endpoint=phoenix + "/v1/traces", batch=False))
    call = LLMCall(request_model="smollm2-135m", provider="openai", route="support", arm="tuned", cohort="orders",
                   candidate_id="cand-123", prompt_version="support-agent@v4", request_id="req-phx-1")
    with tr.llm_span(call) as sp:
        sp.set_response(response_model="smollm2-135m-q4", input_tokens=21, output_tokens=9, finish_reasons=["stop"],
                        cost_prompt=0.0001, cost_completion=0.0002)
        sp.add_evaluation(EvalEvent("json_validation", 0.0, False, "answer is not JSON"))
        sp.guardrail("json_validation", "post", "fallback", "invalid JSON")
    tr.shutdown()

    client = Client(base_url=phoenix)
    spans: list[Any] = []

    def both_spans() -> bool:
        nonlocal spans
        spans = list(client.spans.get_spans(project_identifier="default", limit=50))
        return len(spans) >= 2

    poll(both_spans, tries=120, step_s=0.5)
    by_name = {s["name"]: s for s in spans}
    llm = by_name["chat smollm2-135m"]
    a = llm["attributes"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "smollm2-135m" and a["gen_ai.response.model"] == "smollm2-135m-q4"
    assert a["gen_ai.usage.input_tokens"] == 21 and a["gen_ai.usage.output_tokens"] == 9
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert llm["span_kind"] == "LLM" and a["llm.model_name"] == "smollm2-135m"   # Phoenix reads openinference.span.kind
    assert a["llm.token_count.prompt"] == 21 and a["llm.token_count.total"] == 30
    assert a["llm.cost.total"] == pytest.approx(0.0003)
    assert a["tunegate.route"] == "support" and a["tunegate.rollout.arm"] == "tuned"
    assert a["tunegate.cohort"] == "orders" and a["tunegate.prompt.version"] == "support-agent@v4"
    assert a["tunegate.candidate.id"] == "cand-123"
    ev = [e for e in llm.get("events") or [] if e["name"] == "gen_ai.evaluation.result"]
    assert ev and ev[0]["attributes"]["gen_ai.evaluation.name"] == "json_validation"
    assert ev[0]["attributes"]["gen_ai.evaluation.score.label"] == "fail"
    guard = by_name["guardrail json_validation"]
    assert guard["span_kind"] == "GUARDRAIL"
    assert guard["parent_id"] == llm["context"]["span_id"]
