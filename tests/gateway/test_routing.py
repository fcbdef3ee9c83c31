"""Sticky percentage rollout, cohort scoping, conditional rules and cost-aware choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunegate.errors import UserError
from tunegate.gateway.config import RouteConfig, load_gateway_config
from tunegate.gateway.release import ArmShare, RolloutState
from tunegate.gateway.routing import RequestFacts, choose_arm

H = {"base": "cand-base", "tuned": "cand-tuned", "cheap": "cand-cheap"}


def _route(**kw: object) -> RouteConfig:
    data: dict[str, object] = {"name": "support", "baseline": "base",
                               "arms": {a: {"candidate": f"{a}.yaml"} for a in ("base", "tuned")}} | kw
    return RouteConfig.model_validate(data)


def _state(pct: float, arm: str = "tuned", seq: int = 1) -> RolloutState:
    return RolloutState(seq, {"support": {arm: ArmShare(pct, H[arm], "sha256:v", seq)}})


def _facts(user: str | None = None, headers: dict[str, str] | None = None, meta: dict[str, object] | None = None,
           key: str | None = None) -> RequestFacts:
    return RequestFacts("support", headers or {}, meta or {}, key, None, user, "req-1")


def _assign(route: RouteConfig, state: RolloutState, n: int = 10_000) -> dict[str, str]:
    return {f"user-{i}": choose_arm(route, _facts(f"user-{i}"), state, H).arm for i in range(n)}


def test_ten_percent_of_ten_thousand_users_is_nine_to_eleven_and_sticky() -> None:
    route = _route()
    first = _assign(route, _state(10))
    share = sum(a == "tuned" for a in first.values()) / len(first)
    assert 0.09 <= share <= 0.11
    assert _assign(route, _state(10, seq=7)) == first  # a reload (new state object) moves nobody
    # the same user through another sticky source (header) lands where the hash puts it, every time
    u = next(k for k, v in first.items() if v == "tuned")
    hdr = _facts(headers={"x-tunegate-user": u})
    assert {choose_arm(route, hdr, _state(10), H).arm for _ in range(20)} == {"tuned"}


def test_raising_ten_to_twenty_moves_only_new_users_and_zero_drains() -> None:
    route = _route()
    at10, at20 = _assign(route, _state(10)), _assign(route, _state(20))
    kept = [u for u, a in at10.items() if a == "tuned"]
    assert all(at20[u] == "tuned" for u in kept)  # nobody of the first 10% moves back
    moved = [u for u in at10 if at10[u] != at20[u]]
    assert all(at10[u] == "base" and at20[u] == "tuned" for u in moved)
    assert 0.08 <= len(moved) / len(at10) <= 0.12
    assert set(_assign(route, _state(0)).values()) == {"base"}
    assert set(_assign(route, _state(100), 500).values()) == {"tuned"}


def test_share_granted_to_another_candidate_hash_sends_nothing() -> None:
    state = RolloutState(1, {"support": {"tuned": ArmShare(100, "cand-old-tuned", "sha256:v", 1)}})
    assert set(_assign(_route(), state, 200).values()) == {"base"}


def test_cohort_scoping_keeps_unserved_cohorts_on_the_baseline() -> None:
    route = _route(cohorts=["billing"])
    state = _state(100)
    billing = _facts("u1", headers={"x-tunegate-cohort": "billing"})
    assert choose_arm(route, billing, state, H).arm == "tuned"
    other = choose_arm(route, _facts("u1", meta={"cohort": "es"}), state, H)
    assert (other.arm, other.reason) == ("base", "cohort_not_served")
    assert choose_arm(route, _facts("u1"), state, H).arm == "base"  # unknown cohort: not served


def test_rules_match_headers_metadata_and_keys_and_tag_cohorts() -> None:
    route = _route(cohorts=["vip"], rules=[
        {"name": "vip tenants", "when": {"metadata.tier": {"in": ["gold", "platinum"]}, "api_key": {"prefix": "team-"}},
         "cohort": "vip"},
        {"name": "internal", "when": {"header.X-Debug": "1"}, "arms": ["base"]},
    ])
    state = _state(100)
    vip = choose_arm(route, _facts("u", meta={"tier": "gold"}, key="team-a"), state, H)
    assert (vip.arm, vip.cohort, vip.rule) == ("tuned", "vip", "vip tenants")
    assert choose_arm(route, _facts("u", meta={"tier": "gold"}, key="other"), state, H).arm == "base"
    dbg = choose_arm(route, _facts("u", headers={"x-debug": "1", "x-tunegate-cohort": "vip"}), state, H)
    assert (dbg.arm, dbg.rule) == ("base", "internal")


def test_cheapest_among_released_arms() -> None:
    route = RouteConfig.model_validate({
        "name": "support", "baseline": "base", "rules": [{"when": {"route": "support"}, "choose": "cheapest"}],
        "arms": {"base": {"candidate": "b.yaml", "price": {"input_per_1m": 5, "output_per_1m": 15}},
                 "cheap": {"candidate": "c.yaml", "price": {"input_per_1m": 0.1, "output_per_1m": 0.4}}}})
    unreleased = RolloutState()
    assert choose_arm(route, _facts("u"), unreleased, H).arm == "base"  # never an unreleased candidate
    released = RolloutState(1, {"support": {"cheap": ArmShare(5, H["cheap"], "sha256:v", 1)}})
    assert choose_arm(route, _facts("u"), released, H).arm == "cheap"


def _write(tmp: Path, text: str) -> Path:
    (tmp / "c.yaml").write_text(yaml.safe_dump({"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9"}))
    p = tmp / "gateway.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "message"), [
    ("version: 1\nroutes:\n  - name: r\n    baseline: nope\n    arms:\n      a: {candidate: c.yaml}\n",
     r"gateway.yaml:3: routes\[0\]: baseline 'nope' is not one of the arms"),
    ("version: 1\nroutes:\n  - name: r\n    baseline: a\n    arms:\n      a: {candidate: missing.yaml}\n",
     r"gateway.yaml:6: routes\[0\].arms.a.candidate: candidate file 'missing.yaml' not found"),
    ("version: 1\nroutes:\n  - name: r\n    baseline: a\n    arms:\n      a: {candidate: c.yaml}\n    rules:\n"
     "      - when: {header.x: {like: 1}}\n", r"gateway.yaml:8: routes\[0\].rules\[0\].when: .*unknown operator 'like'"),
    ("version: 2\nroutes: []\n", r"gateway.yaml:1: version: Input should be 1"),
    ("version: 1\nroutes:\n  - name: r\n    baseline: a\n    arms:\n      a: {candidate: c.yaml}\n    retries: -1\n",
     r"gateway.yaml:7: routes\[0\].retries: Input should be greater than or equal to 0"),
    ("version: 1\nroutes:\n  - name: r\n    baseline: a\n    arms:\n      a: {candidate: c.yaml}\n    fallback: [b]\n",
     r"routes\[0\]: .*fallback 'b' is not one of the arms"),
    ("version: 1\nauth:\n  keys:\n    - {name: k, sha256: sk-plaintext}\nroutes:\n  - name: r\n    baseline: a\n"
     "    arms:\n      a: {candidate: c.yaml}\n", r"gateway.yaml:4: auth.keys\[0\].sha256: .*never the key itself"),
])
def test_bad_config_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_gateway_config(_write(tmp_path, text))


def test_serve_check_exits_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.cli.main import main

    p = _write(tmp_path, "version: 1\nroutes:\n  - name: r\n    baseline: a\n    arms: {}\n")
    assert main(["--db", str(tmp_path / "db"), "serve", "--config", str(p), "--check"]) == 2
    assert "gateway.yaml:3: routes[0]: baseline 'a' is not one of the arms (arms: is empty)" in capsys.readouterr().err


def test_example_gateway_config_loads() -> None:
    cfg, specs = load_gateway_config(Path(__file__).resolve().parents[2] / "examples/support/gateway.yaml")
    assert [r.name for r in cfg.routes] == ["support"] and set(specs["support"]) == {"incumbent", "candidate"}
