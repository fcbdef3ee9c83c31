"""``tunegate serve --release release.yaml``: the controller and tracing run in the app's lifespan;
gateway spans (with cohort, prompt version, tokens, evaluator results) land in the span store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import GatewayServer
from tests.gateway.test_release_controller import GOOD, ask, setup_route, wait
from tests.support.openai_server import OpenAIServer
from tunegate.errors import UserError
from tunegate.gateway.release_config import install_release_control, load_release_file
from tunegate.store import online as q
from tunegate.store.sqlite import Store

openai = pytest.importorskip("openai")
pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra")
pytestmark = pytest.mark.slow

POLICY = """\
steps: [50, 100]
defaults: {min_pairs: 1000000}
rollback_when:
  fail_rate: {max_increase: 0.0, per_cohort: true}
"""
RELEASE = """\
routes:
  - route: support
    arm: tuned
    policy: release-policy.yaml
    evaluators: [json_validation]
    mirror: {share: 1.0}
tick_s: 0.1
tracing: {span_store: true}
"""


def test_release_file_is_validated_with_file_line_field(tmp_path: Path) -> None:
    (tmp_path / "release-policy.yaml").write_text(POLICY)
    p = tmp_path / "release.yaml"
    p.write_text(RELEASE.replace("share: 1.0", "share: 1.5"))
    with pytest.raises(UserError, match=r"release.yaml:6: routes\[0\].mirror.share: Input should be less"):
        load_release_file(p)
    p.write_text(RELEASE.replace("tick_s", "tick"))
    with pytest.raises(UserError, match=r"release.yaml:7: tick: unknown key 'tick'"):
        load_release_file(p)
    p.write_text(RELEASE)
    rf, routes = load_release_file(p)
    assert routes[0].mirror_share == 1.0 and routes[0].policy.steps[0].percent == 50 and rf.tick_s == 0.1


def test_serve_with_release_file_traces_requests_into_the_span_store(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "release-policy.yaml").write_text(POLICY)
    (tmp_path / "release.yaml").write_text(RELEASE)
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=GOOD) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 50)
        srv = GatewayServer(cfg, db)
        install_release_control(srv.app, tmp_path / "release.yaml", db)
        with srv:
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            for i in range(30):
                ask(client, i, ("orders", "faq")[i % 2])
            ctl = srv.app.state.release_control
            assert wait(lambda: ctl.route("support").mirror.queued == 0 and ctl.route("support").pending == 0)
            time.sleep(0.5)
            # the controller's live state, over HTTP and through `rollout status --gateway`
            live = httpx.get(f"http://127.0.0.1:{srv.port}/v1/rollout").json()["release"]
            (r,) = live
            assert r["route"] == "support" and r["arm"] == "tuned" and r["percent"] == 50 and r["steps"] == [50, 100]
            assert r["needs"]["min_pairs"] == 1000000 and r["at_step"]["pairs"] == len(q.pair_rows(Store(db), "support"))
            assert r["scoring"] == {"pending": 0, "max_pending": 1000, "dropped": 0}
            assert r["mirror"]["share"] == 1.0 and r["mirror"]["dropped"] == 0 and r["mirror"]["shadow_ok"] > 0
            assert r["mirror"]["queued"] == 0
            assert r["last_decision"]["action"] == "hold" and "waiting for evidence" in r["last_decision"]["reason"]
            from tunegate.cli.main import main

            assert main(["--db", str(db), "rollout", "status", "--config", str(cfg), "--json",
                         "--gateway", f"http://127.0.0.1:{srv.port}/v1"]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["release"][0]["scoring"]["dropped"] == 0 and shown["routes"][0]["route"] == "support"
            assert main(["--db", str(db), "rollout", "status", "--config", str(cfg),
                         "--gateway", f"http://127.0.0.1:{srv.port}"]) == 0
            table = capsys.readouterr().out
            assert "release controller (live): support/tuned" in table and "backlog 0/1000, dropped 0" in table
            assert "hold: waiting for evidence" in table
        with Store(db) as store:
            spans = q.span_rows(store)
            pairs = q.pair_rows(store, "support")
    roots = [s for s in spans if s["name"] == "chat support"]
    assert len(roots) == 30 and {s["cohort"] for s in roots} == {"orders", "faq"}
    assert {s["arm"] for s in roots} == {"base", "tuned"} and all(s["input_tokens"] for s in roots)
    assert all(s["model"] == "test-model" and s["source"] == "gateway" for s in roots)
    evaluated = [s for s in spans if s["kind"] == "EVALUATOR"]
    assert evaluated and all(s["eval_failed"] == 0 for s in evaluated)
    shadows = [s for s in spans if s["source"] == "shadow"]
    assert shadows and len(pairs) == len(shadows)
    assert {s["trace_id"] for s in shadows} <= {s["trace_id"] for s in roots}   # under the request's trace
