"""Which arm serves a request: conditional rules, cohort scoping, sticky percentages, cost-aware choice.

Sticky rollout: a user's bucket for an arm is a hash of (route, arm, sticky key) mapped to
[0, 100). The user goes to the arm when the bucket is below the arm's share, so raising a share
from 10% to 20% keeps every user of the first 10% (their bucket is still below 20) and adds new
ones; 0% sends nobody. Candidate arms are checked in configuration order; with several candidate
arms a later arm draws from the users the earlier ones did not take (its effective share is
``share × (1 − earlier shares)``). A request without a sticky key gets a random bucket.

Cohort scoping: when a route lists ``cohorts``, only requests whose cohort is one of them may
reach a candidate arm — the rest stay on the baseline. This is how a cohort-level PROMOTE sends
only the cohorts where the candidate won to it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunegate.gateway.config import RouteConfig, RuleConfig
from tunegate.gateway.release import RolloutState

__all__ = ["Choice", "RequestFacts", "bucket", "choose_arm", "matches", "sticky_value"]

COHORT_HEADER = "x-tunegate-cohort"


@dataclass(frozen=True)
class RequestFacts:
    """What rules can look at."""

    route: str
    headers: Mapping[str, str]  #: lower-cased names
    metadata: Mapping[str, Any]
    api_key: str | None  #: key name
    tenant: str | None
    user: str | None  #: the body's ``user`` field
    request_id: str

    def subject(self, name: str, cohort: str | None = None) -> Any:
        if name.startswith("header."):
            return self.headers.get(name[7:])
        if name.startswith("metadata."):
            cur: Any = self.metadata
            for part in name[9:].split("."):
                cur = cur.get(part) if isinstance(cur, Mapping) else None
            return cur
        return {"api_key": self.api_key, "tenant": self.tenant, "cohort": cohort, "route": self.route}.get(name)


def _holds(value: Any, op: str, arg: Any) -> bool:
    if op == "exists":
        return (value is not None) == bool(arg)
    if value is None:
        return op in ("ne", "not_in")
    text = str(value)
    if op == "eq":
        return text == str(arg)
    if op == "ne":
        return text != str(arg)
    if op == "in":
        return text in {str(a) for a in arg}
    if op == "not_in":
        return text not in {str(a) for a in arg}
    if op == "prefix":
        return text.startswith(str(arg))
    if op == "regex":
        return re.search(str(arg), text) is not None
    raise AssertionError(op)  # validated at load


def matches(rule: RuleConfig, facts: RequestFacts, cohort: str | None) -> bool:
    """True when every condition of ``rule.when`` holds for the request."""
    for subject, cond in rule.when.items():
        value = facts.subject(subject, cohort)
        if not all(_holds(value, op, arg) for op, arg in cond.items()):
            return False
    return True


def sticky_value(route: RouteConfig, facts: RequestFacts) -> str | None:
    """The first sticky-key source present (``header.x``, ``user``, ``metadata.k``, ``api_key``)."""
    for src in route.sticky_key:
        v = facts.user if src == "user" else facts.subject(src)
        if v is not None and str(v) != "":
            return str(v)
    return None


def bucket(route: str, arm: str, key: str) -> float:
    """A stable position in [0, 100) for (route, arm, key)."""
    h = hashlib.blake2b(f"{route}\x00{arm}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 * 100.0


@dataclass(frozen=True)
class Choice:
    arm: str
    cohort: str | None
    rule: str | None  #: name (or index) of the rule that matched
    sticky_key: str | None
    reason: str  #: baseline | rollout | cheapest | forced | cohort_not_served


def choose_arm(route: RouteConfig, facts: RequestFacts, state: RolloutState, hashes: Mapping[str, str]) -> Choice:
    """The arm for this request (see the module docstring)."""
    cohort = facts.headers.get(COHORT_HEADER) or _str(facts.metadata.get("cohort"))
    allowed: list[str] | None = None
    mode, rule_name = "rollout", None
    for i, rule in enumerate(route.rules):
        if matches(rule, facts, cohort):
            allowed, mode, rule_name = rule.arms, rule.choose, rule.name or f"rules.{i}"
            cohort = cohort or rule.cohort
            break
    key = sticky_value(route, facts)
    arms = [a for a in route.arms if allowed is None or a in allowed]
    served = route.cohorts is None or (cohort is not None and cohort in route.cohorts)
    candidates = [a for a in arms if a != route.baseline]
    if not served:
        candidates = []
    if mode == "cheapest":
        pool = [a for a in candidates if state.released(route.name, a, hashes[a])
                and state.share(route.name, a, hashes[a]) > 0]
        if route.baseline in arms or not pool:
            pool.append(route.baseline)
        best = min(pool, key=lambda a: (_unit_price(route, a), a != route.baseline))
        return Choice(best, cohort, rule_name, key, "cheapest")
    for arm in candidates:
        share = state.share(route.name, arm, hashes[arm])
        if share <= 0:
            continue
        if share >= 100 or bucket(route.name, arm, key or facts.request_id) < share:
            return Choice(arm, cohort, rule_name, key, "rollout")
    if allowed is not None and route.baseline not in allowed:
        # a rule that excludes the baseline still cannot send traffic to an unreleased candidate
        forced = next((a for a in candidates if state.share(route.name, a, hashes[a]) > 0), None)
        if forced is not None:
            return Choice(forced, cohort, rule_name, key, "forced")
    return Choice(route.baseline, cohort, rule_name, key, "baseline" if served else "cohort_not_served")


def _unit_price(route: RouteConfig, arm: str) -> float:
    p = route.arms[arm].price
    return p.input_per_1m + p.output_per_1m


def _str(v: Any) -> str | None:
    return None if v is None else str(v)
