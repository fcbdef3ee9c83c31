"""Release policy YAML (validation with file:line: field) and the pure ReleaseController."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunegate.core.release_policy import ReleasePolicy, load_release_policy
from tunegate.engine.online import OnlineMonitor, ReleaseController, ReleaseState
from tunegate.errors import UserError

POLICY = """\
name: support-release
version: 2
alpha: 0.05
max_cohorts: 4
steps:
  - {percent: 1, min_pairs: 100, min_requests: 10, min_duration_s: 30}
  - 5
  - 25
  - 50
  - 100
defaults: {min_pairs: 200, min_requests: 50, min_duration_s: 60}
ramp_when:
  fail_rate: {max_increase: 0.05}
  error_rate: {max_increase: 0.05}
rollback_when:
  fail_rate: {max_increase: 0.0, per_cohort: true}
  error_rate: {max_increase: 0.02}
  p99_latency: {max_ratio: 1.5}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "release.yaml"
    p.write_text(text)
    return p


def policy(tmp_path: Path) -> ReleasePolicy:
    return load_release_policy(write(tmp_path, POLICY))


def test_policy_loads_versioned_and_hashed(tmp_path: Path) -> None:
    p = policy(tmp_path)
    assert p.version == "2" and [s.percent for s in p.steps] == [1, 5, 25, 50, 100]
    assert p.step_needs(0).min_pairs == 100 and p.step_needs(1).min_pairs == 200
    # fail_rate: 2 sources x (1 + 4 cohorts); error_rate 1; p99 1
    assert p.n_tests() == 12 and p.alpha_per_test == pytest.approx(0.05 / 12)
    same = load_release_policy(write(tmp_path, POLICY.replace("version: 2", "version: '2'")))
    assert same.hash == p.hash and p.hash.startswith("rel-")
    other = load_release_policy(write(tmp_path, POLICY.replace("max_increase: 0.02", "max_increase: 0.03")))
    assert other.hash != p.hash


@pytest.mark.parametrize(("text", "where"), [
    (POLICY.replace("max_increase: 0.0,", "max_increse: 0.0,"), ":16: rollback_when.fail_rate.max_increse: unknown key 'max_increse' (allowed: max_increase, per_cohort)"),
    (POLICY.replace("  - 25\n", "  - 0.5\n"), ":5: steps: steps must increase"),
    (POLICY.replace("  - 50\n", "  - 150\n"), ":9: steps[3]: Input should be less than or equal to 100"),
    (POLICY.replace("p99_latency: {max_ratio: 1.5}", "p99_latency: {max_ratio: 0.5}"),
     ":18: rollback_when.p99_latency.max_ratio:"),
    ("steps: [1, 100]\nrollback_when: {}\n", ":2: rollback_when: rollback_when needs at least one condition"),
    ("- 1\n", ":1: a release policy must be a mapping"),
])
def test_bad_policy_names_file_line_field(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(UserError) as e:
        load_release_policy(write(tmp_path, text))
    assert e.value.exit_code == 2
    assert where in str(e.value), str(e.value)


def feed(mon: OnlineMonitor, n: int, *, p_base: float, p_cand: dict[str, float], seed: int = 0,
         err_cand: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    cohorts = list(p_cand)
    for i in range(n):
        c = cohorts[i % len(cohorts)]
        u = rng.random()
        mon.observe_pair([c], base_failed=u < p_base, candidate_failed=u < p_cand[c])
        mon.observe_request("candidate", [c], error=bool(rng.random() < err_cand), latency_ms=50 + rng.random())
        mon.observe_request("base", [c], error=False, latency_ms=50 + rng.random())


def test_controller_ramps_on_evidence_and_holds_without(tmp_path: Path) -> None:
    p = policy(tmp_path)
    ctl, mon = ReleaseController(p), OnlineMonitor(p)
    d = ctl.decide(ReleaseState(now_s=100.0), mon.snapshot())
    assert d.action == "hold" and "0/100 mirrored pairs" in d.reason and d.percent == 1
    feed(mon, 1500, p_base=0.1, p_cand={"a": 0.1, "b": 0.1})
    early = ctl.decide(ReleaseState(now_s=10.0), mon.snapshot())
    assert early.action == "hold" and "10/30 s" in early.reason
    d = ctl.decide(ReleaseState(now_s=100.0), mon.snapshot())
    assert d.action == "ramp" and d.percent == 5
    ev = {(e.signal, e.source) for e in d.evidence}
    assert ("fail_rate", "mirror") in ev and ("error_rate", "canary") in ev
    assert all(e.met and e.bound <= e.threshold for e in d.evidence)
    mon.start_step()
    d = ctl.decide(ReleaseState(step=1, step_started_s=100.0, now_s=1000.0), mon.snapshot())
    assert d.action == "hold" and "0/200 mirrored pairs" in d.reason
    last = ctl.decide(ReleaseState(step=4), mon.snapshot())
    assert last.action == "hold" and last.percent == 100


def test_controller_rolls_back_only_the_breaking_cohort(tmp_path: Path) -> None:
    p = policy(tmp_path)
    ctl, mon = ReleaseController(p), OnlineMonitor(p)
    feed(mon, 600, p_base=0.05, p_cand={"json": 0.6, "chat": 0.05, "tools": 0.05, "faq": 0.05}, seed=1)
    d = ctl.decide(ReleaseState(now_s=5.0), mon.snapshot())
    assert d.action == "rollback", d.reason
    assert d.cohorts == ("json",) and d.percent == 1     # the pooled breach is explained by "json"
    assert any(e.cohort == "json" for e in d.evidence)
    assert not any(e.cohort in ("chat", "tools", "faq") for e in d.evidence)
    e = next(e for e in d.evidence if e.cohort == "json")
    assert e.bound > 0 and e.n > 0 and e.signal == "fail_rate" and 0 < e.alpha < 0.05
    mon2 = OnlineMonitor(p)
    feed(mon2, 2000, p_base=0.05, p_cand={"json": 0.35, "chat": 0.05, "tools": 0.05, "faq": 0.05,
                                         "x": 0.05, "y": 0.05, "z": 0.05, "w": 0.05}, seed=2)
    d2 = ctl.decide(ReleaseState(now_s=5.0), mon2.snapshot())
    assert d2.action == "rollback" and d2.cohorts == ("json",) and d2.percent == 1
    mon2.exclude(["json"])
    feed(mon2, 2000, p_base=0.05, p_cand={"json": 0.35, "chat": 0.05, "tools": 0.05, "faq": 0.05,
                                         "x": 0.05, "y": 0.05, "z": 0.05, "w": 0.05}, seed=3)
    after = ctl.decide(ReleaseState(now_s=6.0, excluded_cohorts=frozenset({"json"})), mon2.snapshot())
    assert after.action != "rollback", after.reason
    assert mon2.snapshot().get("fail_rate", "mirror").n == 1750      # pooled restarted without "json"
    assert ctl.decide(ReleaseState(rolled_back=True), mon2.snapshot()).percent == 0.0


def test_controller_rolls_back_route_on_errors(tmp_path: Path) -> None:
    p = policy(tmp_path)
    ctl, mon = ReleaseController(p), OnlineMonitor(p)
    feed(mon, 800, p_base=0.1, p_cand={"a": 0.1}, err_cand=0.3, seed=3)
    d = ctl.decide(ReleaseState(), mon.snapshot())
    assert d.action == "rollback" and d.cohorts is None and d.percent == 0.0
    assert [e.signal for e in d.evidence] == ["error_rate"]
    assert d.to_dict()["evidence"][0]["n"] == 800


def test_aa_never_rolled_back_over_a_long_run(tmp_path: Path) -> None:
    p = policy(tmp_path)
    ctl, mon = ReleaseController(p), OnlineMonitor(p)
    rng = np.random.default_rng(11)
    for i in range(3000):
        c = "abcd"[i % 4]
        mon.observe_pair([c], base_failed=bool(rng.random() < 0.1), candidate_failed=bool(rng.random() < 0.1))
        if i % 50 == 0:
            assert ctl.decide(ReleaseState(now_s=float(i)), mon.snapshot()).action != "rollback"
