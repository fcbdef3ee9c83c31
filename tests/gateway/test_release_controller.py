"""Release controller through the real gateway, driven by the real ``openai`` SDK.

* a candidate that breaks JSON on one cohort is rolled back for that cohort only, automatically,
  with an audited decision carrying its evidence; the other cohort keeps the candidate;
* an A/A canary (candidate == base) is never rolled back, and its mirrored pairs are stored,
  scored and readable as a paired dataset;
* a shadow upstream that hangs does not delay primaries (the queue drops and counts instead);
* ``POST /v1/feedback`` joins thumbs to the request's arm and cohort.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import (
    GatewayServer,
    poll,
    promote_tuned,
    write_candidate,
    write_gateway,
)
from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.core.release_policy import ReleasePolicy
from tunegate.gateway.controller import ReleaseControl, RouteRelease
from tunegate.gateway.online import mirror_runs
from tunegate.store import online as q
from tunegate.store.release import rollout_events
from tunegate.store.sqlite import Store

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}


def _last_user(req: RecordedRequest) -> str:
    msgs = [m for m in (req.body or {}).get("messages", []) if m.get("role") == "user"]
    return str(msgs[-1].get("content", "")) if msgs else ""


def GOOD(req: RecordedRequest) -> Any:
    return Reply(text=json.dumps({"answer": _last_user(req)[:40]}))


def breaks_orders(req: RecordedRequest) -> Any:
    return Reply(text="Sure! Your order ships soon.") if "order" in _last_user(req) else GOOD(req)


def policy(**over: Any) -> ReleasePolicy:
    data: dict[str, Any] = {
        "name": "test-release", "alpha": 0.05, "max_cohorts": 2,
        "steps": [{"percent": 50, "min_pairs": 10**6}, 100],
        "rollback_when": {"fail_rate": {"max_increase": 0.0, "per_cohort": True},
                          "error_rate": {"max_increase": 0.5}},
    } | over
    return ReleasePolicy.model_validate(data)


def setup_route(tmp_path: Path, base: OpenAIServer, tuned: OpenAIServer, share: float) -> tuple[Path, Path]:
    write_candidate(tmp_path / "base.yaml", "base", base.base_url)
    write_candidate(tmp_path / "tuned.yaml", "tuned", tuned.base_url, prompt={"system": "Answer in JSON."})
    cfg = write_gateway(tmp_path, [{
        "name": "support", "baseline": "base", "schema": SCHEMA,
        "arms": {"base": {"candidate": "base.yaml"}, "tuned": {"candidate": "tuned.yaml"}},
        "fallback": ["base"], "retries": 0, "timeout_s": 5,
    }])
    db = tmp_path / "db.sqlite"
    if share > 0:
        promote_tuned(tmp_path, cfg, db, share)
    return cfg, db


def ask(client: Any, i: int, cohort: str) -> tuple[str, str]:
    text = f"where is my order {i}" if cohort == "orders" else f"opening hours {i}"
    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": text}], user=f"user-{i}",
        extra_headers={"x-tunegate-cohort": cohort})
    done = raw.parse()
    json.loads(done.choices[0].message.content)           # the client always gets valid JSON
    return raw.headers["x-tunegate-arm"], raw.headers["x-request-id"]


def start(srv: GatewayServer, routes: list[RouteRelease]) -> ReleaseControl:
    ctl = ReleaseControl(routes, tick_s=0.1).attach(srv.gateway)
    srv.run(ctl.start())
    for r in routes:
        if ctl.route(r.route).scorer is not None:
            ctl.route(r.route).scorer.warm()   # type: ignore[union-attr]
    return ctl


def wait(cond: Any, seconds: float = 30.0) -> bool:
    """Wait for an event (about ``seconds`` of 50 ms looks); never a measurement."""
    return poll(cond, tries=int(seconds / 0.05))


def drive_until_decision(route: Any, send: Callable[[int, str], Any], *, rounds: int, drain_every: int,
                         drained: Callable[[], bool]) -> int:
    """Send one request per cohort per round until the controller decides (or ``rounds`` run out),
    letting the mirror/scoring backlog drain every ``drain_every`` rounds so evidence keeps up with
    traffic; how many rounds were sent. Paced by events, never by the clock."""
    i = 0
    while not route.decisions and i < rounds:
        for c in ("orders", "faq"):
            send(i, c)
        i += 1
        if i % drain_every == 0:
            wait(drained, 10)
    return i


def test_candidate_breaking_json_on_one_cohort_is_rolled_back_for_that_cohort_only(tmp_path: Path) -> None:
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=breaks_orders) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 50)
        with GatewayServer(cfg, db) as srv:
            rr = RouteRelease("support", "tuned", policy(), evaluators=["json_validation"], mirror_share=1.0)
            ctl = start(srv, [rr])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            route = ctl.route("support")
            drive_until_decision(route, lambda i, c: ask(client, i, c), rounds=400, drain_every=20,
                                 drained=lambda: route.mirror is not None and route.mirror.queued == 0)
            assert wait(lambda: bool(route.decisions)), "no rollback after 800 requests"
            d = route.decisions[0]
            assert d.action == "rollback" and d.cohorts == ("orders",), d.reason
            assert srv.gateway.cohort_blocks[("support", "tuned")] == frozenset({"orders"})
            arms_after = {c: {ask(client, 1000 + k, c)[0] for k in range(40)} for c in ("orders", "faq")}
            srv.run(ctl.aclose())
        assert arms_after["orders"] == {"base"}            # the broken cohort is back on the base
        assert "tuned" in arms_after["faq"]                # the other cohort keeps the candidate
        with Store(db) as store:
            ev = [e for e in rollout_events(store, "support") if e["action"] == "rollback_cohort"]
            assert len(ev) == 1 and ev[0]["actor"] == "release-controller" and ev[0]["to_percent"] == 50
            evidence = ev[0]["evidence"]["decision"]["evidence"]
            assert any(e["cohort"] == "orders" and e["bound"] > 0 and e["n"] > 0 for e in evidence)
            dec = q.list_decisions(store, "support")
            assert dec[0]["action"] == "rollback_cohort" and dec[0]["cohorts"] == ["orders"]
            pairs = q.pair_rows(store, "support")
            orders = [p for p in pairs if p["cohort"] == "orders"]
            assert orders and all(p["candidate_failed"] == 1 and p["base_failed"] == 0 for p in orders)
            assert pairs[0]["evaluators"][0]["name"] == "json_validation"


def test_aa_canary_is_not_rolled_back_and_pairs_are_a_dataset(tmp_path: Path) -> None:
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=GOOD) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 50)
        with GatewayServer(cfg, db) as srv:
            rr = RouteRelease("support", "tuned", policy(), evaluators=["json_validation"], mirror_share=1.0)
            ctl = start(srv, [rr])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            with ThreadPoolExecutor(4) as pool:
                arms = list(pool.map(lambda i: ask(client, i, ("orders", "faq")[i % 2])[0], range(300)))
            route = ctl.route("support")
            n_base = len(arms) - arms.count("tuned")

            def settled() -> bool:
                # The request hook runs after the client has its answer, so the last few requests may be
                # offered after the queue looked empty: wait until every baseline answer was offered and
                # every enqueued shadow has finished, not only for an empty queue.
                m = route.mirror
                return (m is not None and m.stats.offered == n_base and m.queued == 0 and route.pending == 0
                        and m.stats.shadow_ok + m.stats.shadow_failed == m.stats.enqueued)

            assert wait(settled)
            srv.run(ctl.decide("support"))
            stats = route.mirror.stats if route.mirror else None
            srv.run(ctl.aclose())
        assert route.decisions == []
        assert 100 < arms.count("tuned") < 200
        assert stats is not None and stats.shadow_ok == stats.enqueued > 0 and stats.dropped == 0
        with Store(db) as store:
            ds = mirror_runs(store, "support")
            assert not [e for e in rollout_events(store, "support") if e["actor"] == "release-controller"]
        n = len(ds["row_ids"])
        assert n == stats.enqueued and len(ds["base"]["json_validation"]) == n
        assert ds["base"]["json_validation"] == ds["candidate"]["json_validation"] == [1.0] * n
        assert {c[0] for c in ds["cohorts"]} == {"orders", "faq"} and ds["shadow_failures"] == 0
        # the pairs are a dataset like any other: `tunegate gate --mirror ROUTE` gates them, per cohort
        from click.testing import CliRunner

        from tunegate.cli.main import cli

        pol = tmp_path / "policy.yaml"
        pol.write_text("name: mirror\nguards:\n  - {evaluator: json_validation, rule: non_inferior, margin: 0.05}\n"
                       "cohorts: {rule: non_inferior, margin: 0.1, min_rows: 20}\n")
        res = CliRunner().invoke(cli, ["--db", str(db), "gate", "--mirror", "support", "--policy", str(pol), "--json"])
        assert res.exit_code == 0, res.output
        verdict = json.loads(res.output)
        assert verdict["decision"] == "PROMOTE" and verdict["candidate"]["rows"] == n
        assert {r["cohort"] for r in verdict["rules"]} >= {"orders", "faq"}


def test_hanging_shadow_does_not_delay_primaries_and_drops_are_counted(tmp_path: Path) -> None:
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=Reply('{"answer": "x"}', delay_s=30)) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 0)
        with GatewayServer(cfg, db) as srv:
            rr = RouteRelease("support", "tuned", policy(), evaluators=["json_validation"], mirror_share=1.0,
                              mirror_queue=5, mirror_concurrency=2, mirror_timeout_s=60)
            ctl = start(srv, [rr])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            for i in range(60):
                ask(client, i, "faq")
            route = ctl.route("support")
            assert route.mirror is not None
            # Causal, not timed: every primary has been answered while no shadow call has come back
            # (the shadow upstream holds each request 30 s), so no primary waited for its shadow.
            finished_shadows = route.mirror.stats.shadow_ok + route.mirror.stats.shadow_failed
            assert wait(lambda: route.mirror is not None and route.mirror.stats.offered == 60, 10)
            stats = route.mirror.stats
            srv.run(ctl.aclose())
        assert finished_shadows == 0 and len(tuned.chat_requests) >= 1
        assert stats.enqueued <= 5 + 2 and stats.dropped == 60 - stats.enqueued and stats.dropped > 0
        assert len(tuned.chat_requests) <= 2   # only the workers' calls reached the hanging shadow


def test_feedback_joins_request_arm_and_cohort(tmp_path: Path) -> None:
    import httpx

    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=GOOD) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 50)
        with GatewayServer(cfg, db) as srv:
            pol = policy(rollback_when={"thumbs_down_rate": {"max_increase": 0.1}})
            ctl = start(srv, [RouteRelease("support", "tuned", pol)])
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            arm, rid = ask(client, 7, "faq")
            url = srv.base_url + "/feedback"
            assert wait(lambda: httpx.post(url, json={"request_id": rid, "thumbs": "down"}).status_code == 200, 5)
            bad = httpx.post(url, json={"request_id": rid, "thumbs": "sideways"})
            missing = httpx.post(url, json={"request_id": "req-nope", "score": 0.5})
            snap = ctl.route("support").monitor.snapshot()
            srv.run(ctl.aclose())
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "thumbs"
        assert missing.status_code == 404
        with Store(db) as store:
            fb = q.feedback_rows(store, "support")
        assert len(fb) == 1 and fb[0]["arm"] == arm and fb[0]["cohort"] == "faq" and fb[0]["thumbs"] == -1
        iv = snap.get("thumbs_down_rate", "feedback")
        assert iv is not None and (iv.n == 0 or arm == "tuned")


def test_ramp_is_carried_out_and_audited(tmp_path: Path) -> None:
    from tunegate.gateway.release import load_rollout

    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=GOOD) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 50)
        with GatewayServer(cfg, db) as srv:
            pol = policy(steps=[50, 100], defaults={"min_pairs": 0, "min_requests": 0, "min_duration_s": 0})
            ctl = start(srv, [RouteRelease("support", "tuned", pol)])
            d = srv.run(ctl.decide("support"))
            shares = srv.gateway.snap.effective_shares()["support"] if srv.gateway.snap else {}
            again = srv.run(ctl.decide("support"))
            srv.run(ctl.aclose())
        assert d is not None and d.action == "ramp" and d.percent == 100 and shares["tuned"] == 100
        assert again is not None and again.action == "hold" and "last step" in again.reason
        with Store(db) as store:
            ev = rollout_events(store, "support")[0]
            h = srv.gateway.snap.hashes["support"]["tuned"] if srv.gateway.snap else ""
            assert load_rollout(store).share("support", "tuned", h) == 100
        assert ev["action"] == "ramp" and ev["from_percent"] == 50 and ev["to_percent"] == 100
        assert ev["actor"] == "release-controller" and ev["evidence"]["policy"]["hash"] == pol.hash
