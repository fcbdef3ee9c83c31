"""Release control: promote only on a verdict that allows the arm, audit every change, drain and roll back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.conftest import rule, stored_verdict
from tunegate.errors import UserError
from tunegate.gateway.config import load_gateway_config
from tunegate.gateway.release import load_rollout, promote, rollback, set_share
from tunegate.store.release import rollout_events
from tunegate.store.sqlite import Store


@pytest.fixture
def setup(two_arm_config: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg, specs = load_gateway_config(two_arm_config)
    hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
    cfg = cfg.model_copy(update={"candidate_hashes": hashes})
    with Store(tmp_path / "db.sqlite") as store:
        yield store, cfg, hashes["support"], hashes


def _verdict(store: Store, tmp_path: Path, h: dict[str, str], decision: str = "PROMOTE", **kw):  # type: ignore[no-untyped-def]
    rules = kw.pop("rules", [rule("headline", "pass")])
    return stored_verdict(store, tmp_path / f"verdict-{decision}.json", baseline_hash=kw.pop("baseline", h["base"]),
                          candidate_hash=kw.pop("candidate", h["tuned"]), decision=decision, rules=rules, **kw)


def test_promote_on_promote_verdict_audits_and_sets_share(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    v = _verdict(store, tmp_path, h)
    check, ev = promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    assert check.allowed and ev["from_percent"] == 0 and ev["to_percent"] == 10
    state = load_rollout(store)
    assert state.share("support", "tuned", h["tuned"]) == 10
    assert state.share("support", "tuned", "cand-other") == 0  # a share belongs to the candidate it was granted to
    hist = rollout_events(store, "support")
    assert hist[0]["actor"] == "alice" and hist[0]["verdict_hash"].startswith("sha256:")
    assert hist[0]["evidence"]["decision"] == "PROMOTE"


@pytest.mark.parametrize(("decision", "status", "blocking"), [("BLOCK", "fail", "guard 1"),
                                                               ("INCONCLUSIVE", "undecided", "guard 1")])
def test_promote_refuses_block_and_inconclusive_naming_the_rule(setup, tmp_path: Path, decision: str, status: str,
                                                                blocking: str) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    v = _verdict(store, tmp_path, h, decision, rules=[rule("headline", "pass"), rule(blocking, status)])
    with pytest.raises(UserError, match=f"refused by {blocking}: the verdict is {decision}"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    assert load_rollout(store).shares == {} and rollout_events(store) == []


def test_promote_refuses_a_verdict_for_another_candidate_or_baseline(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    v = _verdict(store, tmp_path, h, candidate="cand-someone-else")
    with pytest.raises(UserError, match="refused by candidate identity"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    v = _verdict(store, tmp_path, h, baseline="cand-another-base")
    with pytest.raises(UserError, match="refused by baseline identity"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")


def test_promote_refuses_a_verdict_for_another_dataset(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    route = cfg.routes[0].model_copy(update={"evidence": cfg.routes[0].evidence.model_copy(
        update={"dataset_hash": "ds-golden"})})
    cfg = cfg.model_copy(update={"routes": [route]})
    v = _verdict(store, tmp_path, h, dataset_hash="ds-other")
    with pytest.raises(UserError, match=r"refused by dataset identity: .*ds-other.*requires ds-golden"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    v = _verdict(store, tmp_path, h, dataset_hash="ds-golden")
    assert promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")[0].allowed


def test_promote_refuses_a_verdict_the_store_never_recorded_or_an_edited_one(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    v = _verdict(store, tmp_path, h, record=False)
    with pytest.raises(UserError, match="refused by stored verdict"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    # a BLOCK verdict edited into PROMOTE does not match what the gate stored
    v = _verdict(store, tmp_path, h, "BLOCK", rules=[rule("guard", "fail")])
    v.write_text(v.read_text().replace('"BLOCK"', '"PROMOTE"').replace('"fail"', '"pass"'))
    with pytest.raises(UserError, match="refused by stored verdict"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")


def test_evaluator_identity_required_by_the_route(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    route = cfg.routes[0].model_copy(update={"evidence": cfg.routes[0].evidence.model_copy(
        update={"evaluators": ["exact", "json_validation"]})})
    cfg = cfg.model_copy(update={"routes": [route]})
    v = _verdict(store, tmp_path, h, evaluators=("exact",))
    with pytest.raises(UserError, match=r"refused by evaluator identity: .*json_validation"):
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")


def test_cohort_level_promote_only_for_routes_serving_those_cohorts(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    rules = [rule("headline", "fail"), rule("cohort billing", "pass", cohort="billing"),
             rule("cohort es", "fail", cohort="es")]
    v = _verdict(store, tmp_path, h, "BLOCK", rules=rules)
    with pytest.raises(UserError, match="refused by headline"):  # the route serves every cohort
        promote(store, cfg, hashes, "support", "tuned", v, 10, "alice", "canary")
    billing = cfg.model_copy(update={"routes": [cfg.routes[0].model_copy(update={"cohorts": ["billing"]})]})
    check, _ = promote(store, billing, hashes, "support", "tuned", v, 10, "alice", "billing only")
    assert check.allowed and check.scope == "cohorts"
    both = cfg.model_copy(update={"routes": [cfg.routes[0].model_copy(update={"cohorts": ["billing", "es"]})]})
    with pytest.raises(UserError, match="refused by cohort es"):
        promote(store, both, hashes, "support", "tuned", v, 10, "alice", "canary")


def test_set_share_ramps_released_arms_only_and_rollback_drains(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, cfg, h, hashes = setup
    with pytest.raises(UserError, match="never released by a verdict"):
        set_share(store, "support", "tuned", 10, "bob", "sneaky")
    promote(store, cfg, hashes, "support", "tuned", _verdict(store, tmp_path, h), 10, "alice", "canary")
    ev = set_share(store, "support", "tuned", 20, "alice", "ramp")
    assert (ev["from_percent"], ev["to_percent"]) == (10, 20) and ev["verdict_hash"]
    events = rollback(store, "support", "controller", "p99 regression", {"p99_ms": 900})
    assert [e["to_percent"] for e in events] == [0]
    assert load_rollout(store).share("support", "tuned", h["tuned"]) == 0
    hist = rollout_events(store, "support")
    assert [e["action"] for e in hist] == ["rollback", "set", "promote"]
    assert hist[0]["evidence"] == {"p99_ms": 900} and hist[0]["actor"] == "controller"
    with pytest.raises(UserError, match="no arm with traffic"):
        rollback(store, "support", "controller", "again")


def test_cli_promote_refusal_exits_2_and_names_the_rule(setup, tmp_path: Path, two_arm_config: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from tunegate.cli.main import main

    store, _cfg, h, _hashes = setup
    v = _verdict(store, tmp_path, h, "BLOCK", rules=[rule("guard 2", "fail")])
    db = str(tmp_path / "db.sqlite")
    code = main(["--db", db, "rollout", "promote", "--config", str(two_arm_config), "--route", "support",
                 "--verdict", str(v), "--percent", "10", "-m", "canary"])
    assert code == 2
    assert "refused by guard 2" in capsys.readouterr().err
    ok = _verdict(store, tmp_path, h)
    assert main(["--db", db, "rollout", "promote", "--config", str(two_arm_config), "--route", "support",
                 "--verdict", str(ok), "--percent", "10", "-m", "canary", "--actor", "ci"]) == 0
    assert main(["--db", db, "rollout", "status", "--config", str(two_arm_config), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"percent": 10.0' in out and '"percent": 90.0' in out
    # --gateway reads a running gateway's live controller state; nothing listening there: exit 2, named
    assert main(["--db", db, "rollout", "status", "--config", str(two_arm_config), "--gateway", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the gateway at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["--db", db, "rollout", "history", "--route", "support"]) == 0
    assert main(["--db", db, "rollout", "rollback", "--route", "support", "-m", "incident"]) == 0
