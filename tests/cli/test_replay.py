"""``tunegate replay`` against a real ``tunegate serve`` app on loopback with a stub OpenAI upstream.

What is checked is what a rollout depends on: every row arrives as a chat request with its cohort
header and a sticky user, the arm that answered is read from the gateway's header, the rate is
open-loop (slow answers do not slow the sender down), failures are counted and set the exit code,
and an unreachable gateway exits 4.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.gateway.conftest import GatewayServer, write_candidate, write_gateway
from tests.support.openai_server import Echo, Fail, OpenAIServer
from tunegate.cli.main import main
from tunegate.cli.replay_cmd import _user_key, build_requests
from tunegate.gateway.records import RequestRecord

TOOL = {"type": "function", "function": {"name": "get_rate", "description": "Exchange rate.",
                                         "parameters": {"type": "object", "properties": {"pair": {"type": "string"}},
                                                        "required": ["pair"]}}}
SCHEMA = {"type": "object", "properties": {"category": {"enum": ["card", "cash"]}}, "required": ["category"]}


def _dataset(tmp: Path) -> Path:
    rows: list[dict[str, Any]] = [
        {"id": "s1", "input": "my card is stuck", "schema": SCHEMA, "expected": {"category": "card"},
         "cohorts": ["structured", "cards"], "split": "test"},
        {"id": "t1", "input": "EUR to USD rate?", "tools": [TOOL],
         "expected_tool_calls": [{"name": "get_rate", "arguments": {"pair": "EURUSD"}}],
         "cohorts": ["tool_call", "function_call"], "split": "test"},
        {"id": "a1", "input": "2+2?", "expected": 4, "cohorts": ["answer", "arithmetic"], "split": "test"},
        {"id": "a2", "input": "3+4?", "expected": 7, "cohorts": ["answer", "arithmetic"], "split": "test"},
        {"id": "x1", "input": "not replayed", "expected": 1, "cohorts": ["answer", "arithmetic"], "split": "train"},
    ]
    p = tmp / "ds.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _gateway(tmp: Path, upstream: OpenAIServer, routes: tuple[str, ...] = ("release",)) -> Path:
    write_candidate(tmp / "base.yaml", "base", upstream.base_url, prompt={"system": "You are the base arm."})
    return write_gateway(tmp, [{"name": r, "baseline": "base", "arms": {"base": {"candidate": "base.yaml"}},
                                "fallback": ["base"], "retries": 0, "timeout_s": 5} for r in routes])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_requests_carry_the_offline_user_turn_tools_and_a_stable_user(tmp_path: Path) -> None:
    reqs = build_requests(str(_dataset(tmp_path)), "test", 6, users=50)
    assert {r.row_id for r in reqs} == {"s1", "t1", "a1", "a2"}
    by_id = {r.row_id: r for r in reqs}
    assert "x1" not in by_id  # the train row stays out of a test replay
    s1 = by_id["s1"]
    assert s1.cohort == "cards" and s1.messages[0]["role"] == "user"
    assert s1.messages[0]["content"].startswith("my card is stuck") and '"enum"' in s1.messages[0]["content"]
    assert by_id["t1"].tools == [TOOL] and by_id["a1"].tools is None
    assert len(reqs) == 6 and [r.user for r in reqs if r.row_id == "s1"] == [_user_key("s1", 50)] * 2
    assert s1.reference is None
    ref = build_requests(str(_dataset(tmp_path)), "test", None, users=50, with_reference=True)
    assert {r.row_id: r.reference for r in ref}["t1"] == {
        "expected_tool_calls": [{"name": "get_rate", "arguments": {"pair": "EURUSD"}, "any_of": {}}]}


@pytest.mark.slow
def test_replay_through_a_real_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[RequestRecord] = []

    async def hook(rec: RequestRecord) -> None:
        seen.append(rec)

    with OpenAIServer(default=Echo("ok: {user}", delay_s=0.3)) as up, \
            GatewayServer(_gateway(tmp_path, up), None, request_hooks=[hook]) as gw:
        out = tmp_path / "summary.json"
        rc = main(["replay", "--base-url", gw.base_url, "--dataset", str(_dataset(tmp_path)), "--rows", "8",
                   "--rate", "20", "--every", "0.2", "--users", "50", "--with-reference", "--json-out", str(out)])
        assert rc == 0, capsys.readouterr()
        summary = json.loads(out.read_text())
        # open loop: answers take 0.3 s but a request leaves every 0.05 s, so several wait at once
        assert up.max_in_flight >= 3
        bodies = list(up.bodies)
    assert summary["sent"] == summary["ok"] == 8 and summary["errors"] == 0 and summary["shed"] == 0
    # latencies are reported per arm (their size is bench/ material; pacing shows in max_in_flight above)
    assert summary["arms"]["base"]["n"] == 8 and isinstance(summary["arms"]["base"]["p50_s"], float)
    assert summary["cohorts"] == {"arithmetic": {"base": 4}, "cards": {"base": 2}, "function_call": {"base": 2}}
    assert sorted(r.cohort or "" for r in seen) == ["arithmetic"] * 4 + ["cards"] * 2 + ["function_call"] * 2
    assert {r.sticky_key for r in seen} <= {_user_key(i, 50) for i in ("s1", "t1", "a1", "a2")}
    assert all(r.arm == "base" and r.route == "release" for r in seen)
    refs = {r.cohort: json.loads(r.request["metadata"]["reference"]) for r in seen}
    assert refs["arithmetic"]["expected"] in (4, 7) and refs["cards"]["schema"] == SCHEMA
    assert not any("metadata" in b for b in bodies)  # gateway metadata never reaches the upstream
    tool_bodies = [b for b in bodies if b.get("tools")]
    assert len(tool_bodies) == 2 and tool_bodies[0]["tools"][0]["function"]["name"] == "get_rate"
    assert all(b["messages"][0] == {"role": "system", "content": "You are the base arm."} for b in bodies)
    printed = capsys.readouterr().out
    assert "sent 8/8 ok 8 errors 0" in printed and "base n=8" in printed


@pytest.mark.slow
def test_failed_requests_exit_1_and_are_counted_by_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(default=Fail(500)) as up, GatewayServer(_gateway(tmp_path, up), None) as gw:
        rc = main(["replay", "--base-url", gw.base_url, "--dataset", str(_dataset(tmp_path)), "--rate", "50"])
    out = capsys.readouterr().out
    assert rc == 1 and "errors 4" in out and "http_502 4" in out


@pytest.mark.slow
def test_several_routes_need_model_and_an_unknown_route_is_refused(tmp_path: Path) -> None:
    with OpenAIServer() as up, GatewayServer(_gateway(tmp_path, up, ("a", "b")), None) as gw:
        args = ["replay", "--base-url", gw.base_url, "--dataset", str(_dataset(tmp_path)), "--rate", "50"]
        assert main(args) == 2
        assert main([*args, "--model", "nope"]) == 2
        assert main([*args, "--model", "b"]) == 0


def test_unreachable_gateway_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["replay", "--base-url", f"http://127.0.0.1:{_free_port()}/v1", "--dataset", str(_dataset(tmp_path)),
               "--rate", "10", "--timeout", "2"])
    assert rc == 4 and "unreachable" in capsys.readouterr().err


def test_bad_split_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["replay", "--base-url", "http://127.0.0.1:1/v1", "--dataset", str(_dataset(tmp_path)),
                 "--rate", "10", "--split", "dev"]) == 2  # no dev rows: refused before any request
