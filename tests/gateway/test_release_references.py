"""Mirrored pairs scored against the client's ``metadata.reference`` (release.yaml ``references: metadata``).

Through the real gateway with the real ``openai`` SDK and stub upstreams:

* switch on: a candidate that calls the wrong tool on one cohort gets ``tool_selection`` failures on its
  mirrored pairs, and the controller rolls that cohort back; the reference never reaches an upstream;
* switch off (the default): the same traffic leaves ``tool_selection`` skipped, as before;
* a malformed reference skips that pair with the reason; the primary answers are unaffected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import (
    GatewayServer,
    promote_tuned,
    write_candidate,
    write_gateway,
)
from tests.gateway.test_release_controller import drive_until_decision, policy, start, wait
from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.errors import UserError
from tunegate.gateway.controller import ReleaseControl, RouteRelease
from tunegate.gateway.release_config import load_release_file
from tunegate.store import online as q
from tunegate.store.sqlite import Store

openai = pytest.importorskip("openai")

TOOLS = [{"type": "function", "function": {"name": n, "description": d, "parameters": {
    "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}}
    for n, d in (("get_order", "Look an order up."), ("cancel_order", "Cancel an order."),
                 ("get_hours", "Opening hours of a store."))]


def _user(req: RecordedRequest) -> str:
    msgs = [m for m in (req.body or {}).get("messages", []) if m.get("role") == "user"]
    return str(msgs[-1].get("content", "")) if msgs else ""


def right(req: RecordedRequest) -> Any:
    text = _user(req)
    return Reply(text=None, tool_calls=[("get_order" if "order" in text else "get_hours", {"id": text.split()[-1]})])


def wrong_on_orders(req: RecordedRequest) -> Any:
    text = _user(req)
    return Reply(text=None, tool_calls=[("cancel_order", {"id": text.split()[-1]})]) if "order" in text else right(req)


def setup(tmp_path: Path, base: OpenAIServer, tuned: OpenAIServer, percent: float) -> tuple[Path, Path]:
    """A tool-calling route (no route schema) with ``tuned`` promoted to ``percent`` (0: shadow only)."""
    write_candidate(tmp_path / "base.yaml", "base", base.base_url)
    write_candidate(tmp_path / "tuned.yaml", "tuned", tuned.base_url)
    cfg = write_gateway(tmp_path, [{
        "name": "support", "baseline": "base",
        "arms": {"base": {"candidate": "base.yaml"}, "tuned": {"candidate": "tuned.yaml"}},
        "fallback": ["base"], "retries": 0, "timeout_s": 5,
    }])
    db = tmp_path / "db.sqlite"
    if percent:
        promote_tuned(tmp_path, cfg, db, percent)
    return cfg, db


def reference(cohort: str, i: int) -> str:
    """What ``tunegate replay --with-reference`` sends: the row's reference as a JSON string."""
    name = "get_order" if cohort == "orders" else "get_hours"
    return json.dumps({"expected_tool_calls": [{"name": name, "arguments": {"id": str(i)}}]}, sort_keys=True)


def ask(client: Any, i: int, cohort: str, ref: str | None) -> str:
    """One request; returns the tool the client was answered with."""
    text = f"where is my order {i}" if cohort == "orders" else f"opening hours of store {i}"
    done = client.chat.completions.create(
        model="support", messages=[{"role": "user", "content": text}], tools=TOOLS, user=f"user-{i}",
        extra_headers={"x-tunegate-cohort": cohort}, **({"metadata": {"reference": ref}} if ref is not None else {}))
    (call,) = done.choices[0].message.tool_calls
    return str(call.function.name)


def drained(ctl: ReleaseControl) -> bool:
    r = ctl.route("support")
    return r.mirror is not None and r.mirror.queued == 0 and r.pending == 0


def pairs(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return q.pair_rows(store, "support")


@pytest.mark.slow
def test_switch_on_scores_tool_calls_against_the_reference_and_rolls_the_cohort_back(tmp_path: Path) -> None:
    with OpenAIServer(default=right) as base, OpenAIServer(default=wrong_on_orders) as tuned:
        cfg, db = setup(tmp_path, base, tuned, 50)
        with GatewayServer(cfg, db) as srv:
            # no live scoring: the evidence is the mirrored pairs alone
            rr = RouteRelease("support", "tuned", policy(), evaluators=["tool_selection"], mirror_share=1.0,
                              score_live=False, references=True)
            ctl = start(srv, [rr])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            route = ctl.route("support")
            i = drive_until_decision(route, lambda i, c: ask(client, i, c, reference(c, i)), rounds=200, drain_every=10,
                                     drained=lambda: drained(ctl))
            assert wait(lambda: bool(route.decisions)), f"no rollback after {2 * i} requests"
            assert srv.gateway.cohort_blocks[("support", "tuned")] == frozenset({"orders"})
            assert wait(lambda: drained(ctl), 10)
            srv.run(ctl.aclose())
        d = route.decisions[0]
        assert d.action == "rollback" and d.cohorts == ("orders",), d.reason
        stored = pairs(db)
        orders = [p for p in stored if p["cohort"] == "orders" and p["candidate_error"] is None]
        faq = [p for p in stored if p["cohort"] == "faq" and p["candidate_error"] is None]
        assert orders and faq
        for p in orders:
            cand, basis = p["candidate_scores"]["tool_selection"], p["base_scores"]["tool_selection"]
            assert cand["status"] == basis["status"] == "ok", (cand, basis)
            assert (basis["passed"], cand["passed"]) == (True, False), cand["reason"]
            assert p["example"]["expected_tool_calls"][0]["name"] == "get_order"
        assert all(p["candidate_failed"] == 0 and p["base_failed"] == 0 for p in faq)
        # the reference is the gateway's: never forwarded to either upstream
        bodies = [r.body or {} for r in base.chat_requests + tuned.chat_requests]
        assert bodies and not [b for b in bodies if "metadata" in b or "reference" in json.dumps(b)]


@pytest.mark.slow
def test_switch_off_skips_and_a_malformed_reference_skips_with_its_reason(tmp_path: Path) -> None:
    with OpenAIServer(default=right) as base, OpenAIServer(default=wrong_on_orders) as tuned:
        cfg, db = setup(tmp_path, base, tuned, 0)   # every answer from the base; every request mirrored
        with GatewayServer(cfg, db) as srv:
            off = RouteRelease("support", "tuned", policy(), evaluators=["tool_selection"], mirror_share=1.0,
                               score_live=False)
            ctl = start(srv, [off])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            served = [ask(client, i, c, reference(c, i)) for i in range(8) for c in ("orders", "faq")]
            assert wait(lambda: drained(ctl) and len(pairs(db)) >= 16, 30)
            srv.run(ctl.aclose())
            assert ctl.route("support").decisions == []
            off_pairs = pairs(db)

            on = RouteRelease("support", "tuned", policy(), evaluators=["tool_selection"], mirror_share=1.0,
                              score_live=False, references=True)
            ctl = start(srv, [on])
            bad = ["{not json", json.dumps(["get_order"]), json.dumps({"expected_calls": []}),
                   json.dumps({"expected_tool_calls": [{"arguments": {}}]}), json.dumps({"schema": {"type": 7}})]
            served += [ask(client, 100 + k, "orders", b) for k, b in enumerate(bad)]
            assert wait(lambda: drained(ctl) and len(pairs(db)) >= 16 + len(bad), 30)
            srv.run(ctl.aclose())
            assert ctl.route("support").decisions == []
    # the primary (base) answered every request with the right tool, whatever the reference said
    assert served == ["get_order", "get_hours"] * 8 + ["get_order"] * len(bad)
    assert len(off_pairs) == 16
    for p in off_pairs:
        for side in ("base", "candidate"):
            s = p[f"{side}_scores"]["tool_selection"]
            assert s["status"] == "skipped" and "expected_tool_calls" in s["reason"], s
        assert p["base_failed"] is None and p["candidate_failed"] is None
        assert "expected_tool_calls" not in p["example"]
    refused = sorted((p for p in pairs(db) if p["request_id"] not in {o["request_id"] for o in off_pairs}),
                     key=lambda p: p["example"]["messages"][-1]["content"])
    assert len(refused) == len(bad)
    reasons = [p["candidate_scores"]["tool_selection"]["reason"] for p in refused]
    for p, why in zip(refused, reasons, strict=True):
        assert p["base_scores"]["tool_selection"]["status"] == p["candidate_scores"]["tool_selection"]["status"] \
            == "skipped"
        assert why.startswith("malformed metadata.reference: ") and p["example"]["metadata"]["reference_error"]
        assert p["candidate_failed"] is None
    joined = " | ".join(reasons)
    for needle in ("not JSON", "must be a JSON object", "unknown key 'expected_calls'", "expected_tool_calls[0].name",
                   "schema"):
        assert needle in joined, joined


def test_release_yaml_switch(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("name: p\nsteps: [50, 100]\nrollback_when:\n"
                                          "  fail_rate: {max_increase: 0.0, per_cohort: true}\n")
    f = tmp_path / "release.yaml"
    body = "routes:\n  - route: support\n    arm: tuned\n    policy: policy.yaml\n"
    f.write_text(body)
    assert load_release_file(f)[1][0].references is False            # off by default
    f.write_text(body + "    references: metadata\n")
    assert load_release_file(f)[1][0].references is True
    f.write_text(body + "    references: client\n")
    with pytest.raises(UserError) as e:
        load_release_file(f)
    assert "references" in str(e.value) and ":5" in str(e.value)
