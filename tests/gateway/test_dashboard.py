"""``GET /dashboard`` data: shares, latency per arm, fail rates with their confidence sequence and
the audited history, all read from a real store (what the gateway and its controller wrote)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import GatewayServer, rule, stored_verdict
from tunegate.gateway.config import load_gateway_config
from tunegate.gateway.dashboard import dashboard_data, dashboard_html, fail_series
from tunegate.gateway.release import promote
from tunegate.store.online import insert_pairs
from tunegate.store.release import log_requests
from tunegate.store.sqlite import Store


def _pair(i: int, cohort: str, base_failed: bool | None, cand_failed: bool | None) -> dict[str, Any]:
    return {"request_id": f"r{i}", "route": "support", "cohort": cohort, "base_arm": "base", "candidate_arm": "tuned",
            "base_hash": "b", "candidate_hash": "t", "base_prompt": None, "candidate_prompt": None,
            "evaluators": [], "base_scores": {}, "candidate_scores": {}, "base_failed": base_failed,
            "candidate_failed": cand_failed, "candidate_error": None, "example": {"input": str(i)},
            "base_output": None, "candidate_output": None, "created_at": f"2026-12-07T01:00:{i:02d}Z"}


def _request(i: int, arm: str, latency: float, status: str = "ok", attempts: int = 1,
             guardrails: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"request_id": f"q{i}", "route": "support", "arm": arm, "chosen_arm": arm, "candidate_hash": "h",
            "prompt_version": None, "cohort": "billing", "api_key": None, "status": status, "http_status": 200,
            "error": None, "latency_ms": latency, "tokens_in": 1, "tokens_out": 1, "cost": 0.0, "cached": 0,
            "attempts": json.dumps([{"arm": arm}] * attempts), "guardrails": json.dumps(guardrails or []),
            "created_at": f"2026-12-07T01:00:{i:02d}Z"}


def test_fail_series_is_the_running_rate_inside_its_bounds() -> None:
    pairs = [_pair(i, "billing", False, i % 4 == 0) for i in range(40)] + [_pair(50, "billing", None, True)]
    series = fail_series(pairs, "tuned", "base")
    billing, base = series
    assert billing["cohort"] == "billing" and billing["arm"] == "tuned" and base["arm"] == "base"
    last = billing["points"][-1]
    assert last["n"] == 40 and last["rate"] == pytest.approx(10 / 40)   # the unscored pair is left out
    assert all(p["lower"] <= p["rate"] <= p["upper"] for p in billing["points"])
    assert billing["points"][-1]["upper"] - billing["points"][-1]["lower"] < billing["points"][0]["upper"] - \
        billing["points"][0]["lower"]   # the sequence narrows with evidence
    assert base["points"][-1]["rate"] == 0.0


def test_dashboard_data_from_the_store(two_arm_config: Path, tmp_path: Path) -> None:
    cfg, specs = load_gateway_config(two_arm_config)
    hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
    cfg = cfg.model_copy(update={"candidate_hashes": hashes})
    h = hashes["support"]
    with Store(tmp_path / "db.sqlite") as store:
        v = stored_verdict(store, tmp_path / "verdict.json", baseline_hash=h["base"], candidate_hash=h["tuned"],
                           decision="PROMOTE", rules=[rule("headline", "pass")])
        promote(store, cfg, hashes, "support", "tuned", v, 25, "alice", "canary")
        log_requests(store, [_request(i, "base", 100.0 + i) for i in range(10)]
                     + [_request(20, "tuned", 900.0, attempts=2),
                        _request(21, "base", 50.0, guardrails=[{"stage": "pre", "check": "pii", "action": "block"}])])
        insert_pairs(store, [_pair(i, "billing", False, True) for i in range(5)])
        data = dashboard_data(store, cfg, hashes, title="t", refresh_s=5)
        page = dashboard_html(store, cfg, hashes)
    (route,) = data["routes"]
    arms = {a["name"]: a for a in route["arms"]}
    assert arms["tuned"]["share"] == 0.25 and arms["base"]["share"] == 0.75 and arms["tuned"]["role"] == "canary"
    assert arms["base"]["p50_ms"] == 104.0 and arms["base"]["p99_ms"] == 109.0 and arms["tuned"]["p99_ms"] == 900.0
    assert route["fallbacks"] == 1 and route["guardrails"] == {"pii": 1}
    assert route["fail_rate"][0]["points"][-1]["rate"] == 1.0
    assert [e["action"] for e in route["history"]] == ["promote"] and "0% → 25%" in route["history"][0]["detail"]
    assert route["history"][0]["verdict"] == "PROMOTE"
    assert "support" in page and "tuned" in page and "<script" not in page


def test_get_dashboard_is_served(two_arm_config: Path, tmp_path: Path) -> None:
    import httpx

    with GatewayServer(two_arm_config, tmp_path / "db.sqlite") as srv:
        r = httpx.get(f"http://127.0.0.1:{srv.port}/dashboard", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "support" in r.text and "Content-Security-Policy" in r.text


def test_dashboard_without_a_store_is_503(two_arm_config: Path) -> None:
    import httpx

    with GatewayServer(two_arm_config, None) as srv:
        r = httpx.get(f"http://127.0.0.1:{srv.port}/dashboard", timeout=30)
    assert r.status_code == 503 and "without a store" in r.text
