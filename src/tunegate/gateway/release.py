"""Release control: traffic reaches a candidate only with a verdict that allows it, and every change is audited.

``set_share`` is the one function that changes a route's traffic split (the CLI's ``rollout``
commands and the release controller's auto-rollback both call it); it writes the new share and an
audit event (who, when, from → to, verdict hash, evidence) in one transaction. ``promote`` checks a
``verdict.json`` first (:func:`check_verdict`) and refuses with the name of the rule that blocked.

A share is granted to a *candidate hash*: when the arm's candidate later changes (new adapter, a
prompt label moved to new text, other params) the share no longer applies and the arm gets no
traffic until a verdict for the new candidate promotes it. The gateway re-reads shares every
``reload_s`` seconds (:func:`load_rollout`), so changes take effect without a restart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.errors import UserError
from tunegate.gateway.config import GatewayConfig, RouteConfig
from tunegate.store import release as q
from tunegate.store.sqlite import Store

__all__ = [
    "RolloutState",
    "VerdictCheck",
    "check_verdict",
    "load_rollout",
    "overview",
    "promote",
    "read_verdict",
    "rollback",
    "set_share",
]


@dataclass(frozen=True)
class ArmShare:
    percent: float
    candidate_hash: str | None
    verdict_hash: str | None
    seq: int


@dataclass(frozen=True)
class RolloutState:
    """Shares per route and arm as last read from the store (immutable: swapped whole on reload)."""

    seq: int = 0
    shares: dict[str, dict[str, ArmShare]] = field(default_factory=dict)

    def share(self, route: str, arm: str, candidate_hash: str) -> float:
        """The arm's share in percent, 0 unless it was granted to exactly this candidate."""
        s = self.shares.get(route, {}).get(arm)
        if s is None or s.candidate_hash != candidate_hash:
            return 0.0
        return s.percent

    def released(self, route: str, arm: str, candidate_hash: str) -> bool:
        """True when a verdict ever released this exact candidate on the route (share may be 0 now)."""
        s = self.shares.get(route, {}).get(arm)
        return s is not None and s.candidate_hash == candidate_hash and s.verdict_hash is not None


def load_rollout(store: Store) -> RolloutState:
    """The current shares (one read)."""
    rows = q.rollout_shares(store)
    shares: dict[str, dict[str, ArmShare]] = {}
    for r in rows:
        shares.setdefault(r["route"], {})[r["arm"]] = ArmShare(float(r["percent"]), r["candidate_hash"],
                                                               r["verdict_hash"], int(r["seq"]))
    return RolloutState(seq=q.latest_seq(store), shares=shares)


def set_share(store: Store, route: str, arm: str, percent: float, actor: str, reason: str,
              evidence: dict[str, Any] | None = None, *, candidate_hash: str | None = None,
              verdict_hash: str | None = None, action: str = "set") -> dict[str, Any]:
    """Set ``arm``'s share of ``route`` to ``percent`` and audit it. Returns the audit event.

    Lowering a share (down to 0 = drain) needs no verdict: it only ever removes traffic. Raising a
    share keeps the candidate and verdict the arm was released with unless new ones are given;
    raising an arm that was never released is refused (use :func:`promote`).
    """
    if not 0.0 <= percent <= 100.0:
        raise UserError(f"percent must be between 0 and 100, got {percent:g}", field="--percent")
    if not actor.strip() or not reason.strip():
        raise UserError("every rollout change needs an actor and a reason", field="reason")
    current = q.rollout_shares(store, route)
    now = next((r for r in current if r["arm"] == arm), None)
    before = float(now["percent"]) if now else 0.0
    if candidate_hash is None and now is not None:
        candidate_hash, verdict_hash = now["candidate_hash"], verdict_hash or now["verdict_hash"]
    if percent > before and (candidate_hash is None or verdict_hash is None):
        raise UserError(f"arm {arm!r} of route {route!r} was never released by a verdict; "
                        "use `tunegate rollout promote --verdict verdict.json`", field="--arm")
    return q.record_share(store, route=route, arm=arm, percent=percent, action=action, actor=actor,
                          reason=reason, candidate_hash=candidate_hash, verdict_hash=verdict_hash,
                          evidence=evidence or {})


def rollback(store: Store, route: str, actor: str, reason: str, evidence: dict[str, Any] | None = None,
             arm: str | None = None) -> list[dict[str, Any]]:
    """Drain ``arm`` (or every arm with a share) of ``route`` to 0%; returns the audit events."""
    rows = [r for r in q.rollout_shares(store, route) if r["percent"] > 0 and (arm is None or r["arm"] == arm)]
    if not rows:
        raise UserError(f"route {route!r} has no arm with traffic to roll back"
                        + (f" (arm {arm!r})" if arm else ""), field="--route")
    return [set_share(store, route, r["arm"], 0.0, actor, reason, evidence, action="rollback") for r in rows]


# -- verdict checks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerdictCheck:
    """Whether a verdict allows traffic; ``rule`` names what blocked (or ``ok``)."""

    allowed: bool
    rule: str
    message: str
    verdict_hash: str
    scope: str = "overall"  #: overall | cohorts


def read_verdict(path: str | Path) -> tuple[dict[str, Any], str]:
    """``verdict.json`` as written by ``tunegate gate`` and the sha256 of its bytes."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read verdict: {e.strerror}", file=str(p)) from None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise UserError(f"not JSON: {e}", file=str(p)) from None
    if not isinstance(data, dict) or "decision" not in data or "candidate" not in data:
        raise UserError("not a verdict.json written by `tunegate gate` (no decision/candidate)", file=str(p))
    return data, "sha256:" + hashlib.sha256(raw).hexdigest()


def _refuse(rule: str, message: str, vh: str) -> VerdictCheck:
    return VerdictCheck(False, rule, message, vh)


def _cohort_decision(verdict: dict[str, Any], cohorts: list[str], vh: str) -> VerdictCheck:
    """A non-PROMOTE verdict may still release a route that serves only cohorts where every rule passed."""
    per = verdict.get("cohort_decisions")
    rules = [r for r in verdict.get("rules") or [] if isinstance(r, dict)]
    for c in cohorts:
        if isinstance(per, dict) and c in per:
            if per[c] != "PROMOTE":
                return _refuse(f"cohort {c}", f"the verdict's decision for cohort {c!r} is {per[c]}", vh)
            continue
        mine = [r for r in rules if r.get("cohort") == c]
        bad = next((r for r in mine if r.get("status") in ("fail", "undecided")), None)
        if bad is not None:
            return _refuse(str(bad.get("name")), f"rule {bad.get('name')!r} ({bad.get('rule')} on "
                           f"{bad.get('evaluator')}, cohort {c}) is {bad.get('status')}: {bad.get('evidence')}", vh)
        if not any(r.get("status") == "pass" for r in mine):
            return _refuse(f"cohort {c}", f"the verdict has no passing rule for cohort {c!r}; a cohort-level "
                           "release needs cohort rules in the policy", vh)
    budget = next((r for r in rules if r.get("rule") == "error_budget" and r.get("status") == "fail"), None)
    if budget is not None:
        return _refuse(str(budget.get("name")), f"error budget exceeded: {budget.get('evidence')}", vh)
    return VerdictCheck(True, "ok", f"PROMOTE for the route's cohorts ({', '.join(cohorts)}); overall "
                        f"{verdict.get('decision')}", vh, scope="cohorts")


def check_verdict(verdict: dict[str, Any], vh: str, route: RouteConfig, arm: str, hashes: dict[str, str],
                  store: Store | None) -> VerdictCheck:
    """Does ``verdict`` allow ``arm`` of ``route`` (whose candidates hash to ``hashes``) to get traffic?

    Checks, in order: the arm is not the baseline; the verdict compares this arm's candidate
    against this route's baseline; it is the verdict the gate stored for those runs (not edited);
    dataset, evaluators and policy match the route's ``evidence``; the decision is PROMOTE, or
    every rule of every cohort the route serves passed.
    """
    if arm == route.baseline:
        return _refuse("baseline", f"arm {arm!r} is the route's baseline; it needs no promotion", vh)
    cand, base = verdict.get("candidate") or {}, verdict.get("baseline") or {}
    if cand.get("candidate_hash") != hashes[arm]:
        return _refuse("candidate identity", f"the verdict is for candidate {cand.get('candidate_hash')}, but arm "
                       f"{arm!r} runs {hashes[arm]}", vh)
    if base.get("candidate_hash") != hashes[route.baseline]:
        return _refuse("baseline identity", f"the verdict's baseline is {base.get('candidate_hash')}, but the route's "
                       f"baseline {route.baseline!r} runs {hashes[route.baseline]}", vh)
    ev = route.evidence
    if ev.dataset_hash is not None and verdict.get("dataset_hash") != ev.dataset_hash:
        return _refuse("dataset identity", f"the verdict was measured on dataset {verdict.get('dataset_hash')}, the "
                       f"route requires {ev.dataset_hash}", vh)
    policy = verdict.get("policy") or {}
    if ev.policy_hash is not None and policy.get("hash") != ev.policy_hash:
        return _refuse("policy identity", f"the verdict comes from policy {policy.get('hash')}, the route "
                       f"requires {ev.policy_hash}", vh)
    if store is not None:
        blocked = _check_stored(verdict, vh, route, store)
        if blocked is not None:
            return blocked
    decision = verdict.get("decision")
    if decision == "PROMOTE":
        return VerdictCheck(True, "ok", "the verdict is PROMOTE", vh)
    if route.cohorts:
        return _cohort_decision(verdict, route.cohorts, vh)
    failing = [r for r in verdict.get("rules") or [] if isinstance(r, dict)
               and r.get("status") == ("fail" if decision == "BLOCK" else "undecided")]
    first = failing[0] if failing else None
    rule = str(first.get("name")) if first else "decision"
    why = f"rule {rule!r} is {first.get('status')}: {first.get('evidence')}" if first else \
        "; ".join(map(str, verdict.get("reasons") or []))
    return _refuse(rule, f"the verdict is {decision}: {why}", vh)


def _check_stored(verdict: dict[str, Any], vh: str, route: RouteConfig, store: Store) -> VerdictCheck | None:
    cand_run = (verdict.get("candidate") or {}).get("run_id")
    base_run = (verdict.get("baseline") or {}).get("run_id")
    stored = q.stored_verdicts(store, str(base_run), str(cand_run))
    same = [s for s in stored if s["decision"] == verdict.get("decision")
            and s["verdict"].get("dataset_hash") == verdict.get("dataset_hash")
            and s["verdict"].get("rules") == verdict.get("rules")]
    if not same:
        return _refuse("stored verdict", f"no verdict with this decision and these rules was recorded by "
                       f"`tunegate gate` for runs {base_run} / {cand_run} in this store", vh)
    try:
        runs = [store.run(str(base_run)), store.run(str(cand_run))]
    except Exception:  # a store without the runs cannot vouch for the evaluators
        return _refuse("stored runs", f"runs {base_run} / {cand_run} are not in this store", vh)
    if runs[0].dataset_hash != runs[1].dataset_hash or runs[1].dataset_hash != verdict.get("dataset_hash"):
        return _refuse("dataset identity", "the verdict's runs were made on different datasets", vh)
    ev_names = route.evidence.evaluators
    if ev_names:
        for run in runs:
            have = {e.get("name") for e in run.evaluators}
            missing = [n for n in ev_names if n not in have]
            if missing:
                return _refuse("evaluator identity", f"run {run.id} was not scored with {', '.join(missing)}", vh)
    return None


def promote(store: Store, cfg: GatewayConfig, hashes: dict[str, dict[str, str]], route_name: str, arm: str,
            verdict_path: str | Path, percent: float, actor: str, reason: str) -> tuple[VerdictCheck, dict[str, Any]]:
    """Check the verdict and set the share; a refusal raises ``UserError`` naming the blocking rule."""
    route = cfg.route(route_name)
    if route is None:
        raise UserError(f"no route {route_name!r} in {cfg.source}; routes: {', '.join(r.name for r in cfg.routes)}",
                        field="--route")
    if arm not in route.arms:
        raise UserError(f"route {route_name!r} has no arm {arm!r}; arms: {', '.join(route.arms)}", field="--arm")
    verdict, vh = read_verdict(verdict_path)
    check = check_verdict(verdict, vh, route, arm, hashes[route_name], store)
    if not check.allowed:
        raise UserError(f"refused by {check.rule}: {check.message}", file=str(verdict_path))
    evidence = {"verdict_file": str(verdict_path), "decision": verdict.get("decision"), "scope": check.scope,
                "dataset_hash": verdict.get("dataset_hash"), "policy_hash": (verdict.get("policy") or {}).get("hash"),
                "baseline_run": (verdict.get("baseline") or {}).get("run_id"),
                "candidate_run": (verdict.get("candidate") or {}).get("run_id"), "config_hash": cfg.hash}
    event = set_share(store, route_name, arm, percent, actor, reason, evidence,
                      candidate_hash=hashes[route_name][arm], verdict_hash=vh, action="promote")
    return check, event


def overview(store: Store, cfg: GatewayConfig, hashes: dict[str, dict[str, str]],
             history: int = 20) -> list[dict[str, Any]]:
    """Per route: arms with their effective shares, candidate hashes, traffic and recent history.

    The data seam for dashboards and ``tunegate rollout status --json``.
    """
    state = load_rollout(store)
    traffic = {(r["route"], r["arm"]): r for r in q.request_summary(store)}
    out = []
    for route in cfg.routes:
        arms: list[dict[str, Any]] = []
        for arm in route.arms:
            h = hashes[route.name][arm]
            stored = state.shares.get(route.name, {}).get(arm)
            share = state.share(route.name, arm, h)
            stale = stored is not None and stored.candidate_hash not in (None, h) and stored.percent > 0
            arms.append({"arm": arm, "baseline": arm == route.baseline, "candidate_hash": h,
                         "percent": share, "stored_percent": stored.percent if stored else 0.0,
                         "stale": stale, "verdict_hash": stored.verdict_hash if stored else None,
                         "traffic": traffic.get((route.name, arm))})
        cand_total = sum(a["percent"] for a in arms if not a["baseline"])
        for a in arms:
            if a["baseline"]:
                a["percent"] = max(0.0, 100.0 - cand_total)
        out.append({"route": route.name, "cohorts": route.cohorts, "arms": arms,
                    "history": q.rollout_events(store, route.name, limit=history)})
    return out
